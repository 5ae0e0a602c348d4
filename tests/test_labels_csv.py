"""The labels CSV shared by the file readers: each bad CSV fails the stage with one line naming it."""

import pytest

from conftest import expect_prepare_error, write_labels
from synthgen.data.labels_csv import read_labels_csv
from synthgen.data.dicom_writer import write_dicom
from synthgen.errors import InputError

import numpy as np


def _overrides(root, *extra):
    return ["data=dicom", f"data.root={root}", *extra]


def test_class_names_sorted_or_given(tmp_path):
    csv = write_labels(tmp_path / "l.csv", [("a", "zeta", "p1"), ("b", "alpha", "p2"), ("c", "zeta", "p3")])
    t = read_labels_csv(csv)
    assert t.class_names == ["alpha", "zeta"] and t.label_index == [1, 0, 1]
    t = read_labels_csv(csv, classes=["zeta", "alpha", "unused"])
    assert t.class_names == ["zeta", "alpha", "unused"] and t.label_index == [0, 1, 0]


def test_empty_cells_and_bad_slice(tmp_path):
    with pytest.raises(InputError, match="row 3: empty patient_id"):
        read_labels_csv(write_labels(tmp_path / "l.csv", [("a", "x", "p"), ("b", "x", "")]))
    with pytest.raises(InputError, match="row 2: slice 'mid' is not an integer"):
        read_labels_csv(write_labels(tmp_path / "s.csv", [("a", "mid", "x", "p")],
                                     header="path,slice,label,patient_id"), with_slice=True)


def test_missing_file_in_a_row(tmp_path):
    root = tmp_path / "root"
    write_dicom(root / "ok.dcm", np.zeros((8, 8), int))
    csv = write_labels(root / "labels.csv", [("ok.dcm", "a", "p1"), ("gone.dcm", "a", "p2")])
    line = expect_prepare_error(tmp_path, _overrides(root), csv, "row 3: file")
    assert "gone.dcm" in line and "not found" in line


def test_csv_without_label_column(tmp_path):
    root = tmp_path / "root"
    csv = write_labels(root / "labels.csv", [("x.dcm", "a", "p1")], header="path,diagnosis,patient_id")
    expect_prepare_error(tmp_path, _overrides(root), csv, "no 'label' column")


def test_empty_csv(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    csv = root / "labels.csv"
    csv.write_text("")
    expect_prepare_error(tmp_path, _overrides(root), csv, "empty CSV")


def test_label_outside_configured_classes(tmp_path):
    root = tmp_path / "root"
    write_dicom(root / "ok.dcm", np.zeros((8, 8), int))
    csv = write_labels(root / "labels.csv", [("ok.dcm", "a", "p1"), ("ok.dcm", "tumour", "p2")])
    expect_prepare_error(tmp_path, _overrides(root, "data.classes=[a,b]"), csv, "label 'tumour' is not in")


def test_header_only_csv(tmp_path):
    with pytest.raises(InputError, match="no data rows"):
        read_labels_csv(write_labels(tmp_path / "l.csv", []))


def test_missing_data_root_is_a_one_line_config_error(tmp_path):
    expect_prepare_error(tmp_path, ["data=nifti"], "data.root", "required for data=nifti")
