"""One DICOM file: bounded reads below a source, header checks, decoding to the display image."""
