"""Series assembly: each case asserts the assembled volume against the written one, or the exact reason."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from medflow.synthetic import Phi, to_bytes
from medflow.synthetic_series import (
    CT_WINDOW,
    SeriesGeometry,
    enhanced_dataset,
    lesion_volume,
    localizer,
    slice_datasets,
    structured_report,
)
from tasks.core.refusals import Rejection
from tasks.dicom.decode import decode
from tasks.dicom.header import Limits
from tasks.dicom.series import assemble
from tasks.dicom.volume import display_volume, resample

PHI = Phi.for_patient(7)
DEPTH, SIZE = 8, 16


def volume(seed: int = 0) -> np.ndarray:
    return lesion_volume(np.random.default_rng(seed), DEPTH, SIZE, abnormal=True)


def expected(datasets) -> np.ndarray:
    """Each slice decoded alone by the 2-D path, in the written (geometric) order."""
    return np.stack([decode(to_bytes(ds), SIZE).pixels for ds in datasets])


def shuffled(datasets, seed: int = 1) -> list[bytes]:
    files = [to_bytes(ds) for ds in datasets]
    return [files[i] for i in np.random.default_rng(seed).permutation(len(files))]


def assembled(files: list[bytes], **kwargs) -> np.ndarray:
    return display_volume(assemble(files, **kwargs))


@pytest.mark.parametrize("numbers", ["ascending", "descending", "absent", "constant"])
def test_slices_are_ordered_by_position_whatever_the_file_names_and_instance_numbers(numbers):
    datasets = slice_datasets(volume(), "CT", PHI, instance_numbers=numbers)
    assert np.array_equal(assembled(shuffled(datasets)), expected(datasets))


@pytest.mark.parametrize("orientation", ["sagittal", "coronal", "axial_feet_first"])
def test_other_orientations_stack_along_their_normal(orientation):
    datasets = slice_datasets(volume(), "MR", PHI, SeriesGeometry(orientation=orientation))
    series = assemble(shuffled(datasets))
    assert np.array_equal(display_volume(series), expected(datasets))
    assert series.spacing == pytest.approx((2.5, 0.8, 0.8))


def test_feet_first_slices_have_negative_z_and_still_ascend_along_the_normal():
    datasets = slice_datasets(volume(), "CT", PHI, SeriesGeometry(orientation="axial_feet_first"))
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    assert z == sorted(z, reverse=True) and z[-1] < 0
    assert np.array_equal(assembled(shuffled(datasets)), expected(datasets))


def test_a_localizer_and_an_sr_are_dropped_and_counted():
    datasets = slice_datasets(volume(), "CT", PHI)
    series = assemble(shuffled(datasets) + [to_bytes(localizer(datasets[0])), to_bytes(structured_report(datasets[0]))])
    assert series.dropped == {"localizer": 1, "non_image": 1}
    assert np.array_equal(display_volume(series), expected(datasets))


def test_a_slice_in_another_orientation_is_a_localizer():
    datasets = slice_datasets(volume(), "CT", PHI)
    odd = copy.deepcopy(datasets[0])
    odd.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    odd.SOPInstanceUID = "1.2.3.4"
    series = assemble(shuffled(datasets) + [to_bytes(odd)])
    assert series.dropped == {"localizer": 1} and len(series.planes) == DEPTH


def test_rle_compressed_slices():
    datasets = slice_datasets(volume(), "CT", PHI)
    plain = expected(datasets)
    compressed = [copy.deepcopy(ds) for ds in datasets]
    for ds in compressed:
        ds.compress("1.2.840.10008.1.2.5", encoding_plugin="pydicom")
    assert np.array_equal(assembled(shuffled(compressed)), plain)


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_an_enhanced_multi_frame_file_with_frames_out_of_order(modality):
    source = volume()
    order = list(np.random.default_rng(3).permutation(DEPTH))
    series = assemble([to_bytes(enhanced_dataset(source, modality, PHI, frame_order=order))])
    assert np.array_equal(display_volume(series), expected(slice_datasets(source, modality, PHI)))
    assert len(series.planes) == DEPTH


def test_the_window_asked_for_replaces_the_series_own():
    datasets = slice_datasets(volume(), "CT", PHI)
    center, width = 400.0, 2000.0
    hu = np.stack([ds.pixel_array.astype(np.float64) - 1024 for ds in datasets])
    low = center - 0.5 - (width - 1) / 2
    want = np.rint(np.clip((hu - low) / (width - 1), 0, 1) * 255).astype(np.uint8)
    got = display_volume(assemble(shuffled(datasets)), (center, width))
    assert np.abs(got.astype(int) - want).max() <= 1
    assert not np.array_equal(got, display_volume(assemble(shuffled(datasets)), CT_WINDOW))


def reason(files: list[bytes], limits: Limits = Limits()) -> str:
    with pytest.raises(Rejection) as caught:
        assemble(files, limits)
    return str(caught.value.reason)


def test_two_series_in_one_folder():
    first, second = slice_datasets(volume(), "CT", PHI), slice_datasets(volume(1), "CT", PHI)
    assert reason(shuffled(first + second)) == "several_series"


def test_a_missing_slice():
    datasets = slice_datasets(volume(), "CT", PHI)
    assert reason(shuffled(datasets[:3] + datasets[4:])) == "missing_slice"


def test_two_slices_at_one_position():
    datasets = slice_datasets(volume(), "CT", PHI)
    twin = copy.deepcopy(datasets[2])
    twin.SOPInstanceUID = "1.2.3.5"
    assert reason(shuffled(datasets + [twin])) == "duplicate_position"


def test_mixed_rows_and_columns():
    datasets = slice_datasets(volume(), "CT", PHI)
    small = slice_datasets(volume()[:, :8, :8], "CT", PHI, series_uid=datasets[0].SeriesInstanceUID)
    assert reason(shuffled(datasets[:4] + small[4:])) == "mixed_geometry"


def test_gantry_tilt_is_refused():
    datasets = slice_datasets(volume(), "CT", PHI, SeriesGeometry(tilt=15.0))
    assert reason(shuffled(datasets)) == "gantry_tilt"


def test_a_single_slice():
    assert reason([to_bytes(slice_datasets(volume(), "CT", PHI)[0])]) == "too_few_slices"


def test_a_slice_without_position():
    datasets = slice_datasets(volume(), "CT", PHI)
    del datasets[3].ImagePositionPatient
    assert reason(shuffled(datasets)) == "no_position"


def test_a_truncated_slice_refuses_the_series_with_its_reason():
    files = shuffled(slice_datasets(volume(), "CT", PHI))
    files[2] = files[2][: len(files[2]) // 2]
    assert reason(files) == "truncated"


def test_slices_of_two_patients():
    datasets = slice_datasets(volume(), "CT", PHI)
    datasets[5].PatientID = "OTHER"
    assert reason(shuffled(datasets)) == "several_patients"


def test_limits_are_checked_from_headers_before_decoding():
    files = shuffled(slice_datasets(volume(), "CT", PHI))
    assert reason(files, Limits(max_slices=4)) == "too_large"
    assert reason(files, Limits(max_volume_bytes=DEPTH * SIZE * SIZE)) == "too_large"  # 2 bytes a voxel


def test_resampling_keeps_physical_proportions_and_pads_black():
    # 8 slices x 2.5 mm = 20 mm deep, 16 x 0.8 mm = 12.8 mm wide: depth is the longest side
    series = assemble(shuffled(slice_datasets(volume(), "CT", PHI)))
    out, voxel = resample(display_volume(series), series.spacing, 20)
    assert out.shape == (20, 20, 20) and voxel == pytest.approx(1.0)
    inside = np.argwhere(out.max(axis=0) > 0)
    assert out[:, :3].max() == 0 and out[:, -3:].max() == 0  # 12.8 mm -> 13 voxels, centred in 20
    assert inside[:, 0].min() >= 3 and inside[:, 0].max() <= 16
