"""The dataset: its schema and image geometry, the Delta table and its layout, patient-level
splits, and the readers that stream a split's images to training and evaluation."""
