from pathlib import Path

from synthgen.config import compose, load_config, to_params_yaml

REPO = Path(__file__).resolve().parent.parent


def test_committed_params_equal_composed_conf():
    # dvc repro reads params.yaml but never composes conf/ (dvc #10750): drift would be silent.
    committed = (REPO / "params.yaml").read_text()
    assert to_params_yaml(compose(())) == committed, "run `python -m synthgen.config` and commit params.yaml"


def test_dvc_compose_gives_the_same_text(tmp_path):
    from dvc.utils.hydra import compose_and_dump

    out = tmp_path / "params.yaml"
    compose_and_dump(out, str(REPO / "conf"), None, "config", str(REPO), [])
    assert out.read_text() == (REPO / "params.yaml").read_text()


def test_overrides_compose(tmp_path):
    cfg = load_config(["data=medmnist", "data.path=/x.npz", "data.rare.keep=5"])
    assert cfg.data.path == "/x.npz" and cfg.data.rare.keep == 5
    assert cfg.data.split.seed == cfg.seed
