"""Loading never runs code from the files it reads. A pickle payload (which, unpickled, would create a marker file)
is planted in every file that a loader reads, in llmarch checkpoints, sharded (DCP) checkpoints and run
directories; each command then fails with a one-line error (exit 2) and the marker never appears. A pickled DCP
.metadata is read only with the documented opt-in, LLMARCH_TRUST_PICKLE=1."""
import pickle
import warnings

import pytest
import torch
import torch.distributed.checkpoint as dcp

import llmarch
from llmarch.checkpoint import save_model
from llmarch.cli import main
from llmarch.data.tokenizer import ByteTokenizer
from llmarch.dcp_json import JsonWriter, load
from llmarch.errors import LlmarchError


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def payload(marker) -> bytes:
    return pickle.dumps(Payload(marker))


def tiny():
    torch.manual_seed(0)
    return llmarch.build("gpt-tiny", vocab_size=260, d_model=16, n_layers=1, n_heads=2, context_length=32).eval()


def plain_checkpoint(folder):
    save_model(tiny(), folder)
    ByteTokenizer().save(folder)
    return folder


def sharded_checkpoint(folder, writer=JsonWriter):
    """A checkpoint as a multi-process run writes it: the model's tensors in a DCP folder beside config.json."""
    plain_checkpoint(folder)
    model = llmarch.load(folder)
    (folder / "model.safetensors").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": model.state_dict()}, storage_writer=writer(folder / "dcp"), no_dist=True)
    return folder, model


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


def generate(folder, capsys):
    return run_cli(["generate", "--checkpoint", str(folder), "--prompt", "ab", "--max-new-tokens", "2"], capsys)


def assert_refused(code, err, marker, *words):
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not marker.exists(), "the payload ran"
    for word in words:
        assert word in err, err


def test_a_sharded_checkpoint_loads_without_pickle(tmp_path):
    folder, model = sharded_checkpoint(tmp_path / "ckpt")
    assert (folder / "dcp" / "metadata.json").is_file() and not (folder / "dcp" / ".metadata").exists()
    ids = torch.randint(0, 260, (1, 8))
    with torch.no_grad():
        assert torch.equal(llmarch.load(folder)(ids).logits, model(ids).logits)


def test_a_pickled_dcp_metadata_is_refused_unless_trusted(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "ran"
    folder, _ = sharded_checkpoint(tmp_path / "ckpt")
    (folder / "dcp" / "metadata.json").unlink()
    (folder / "dcp" / ".metadata").write_bytes(payload(marker))
    assert_refused(*generate(folder, capsys), marker, "LLMARCH_TRUST_PICKLE")
    # a genuine DCP folder (torch's own writer) loads when the user says it is trusted
    real, model = sharded_checkpoint(tmp_path / "real", writer=dcp.FileSystemWriter)
    with pytest.raises(LlmarchError, match="LLMARCH_TRUST_PICKLE"):
        llmarch.load(real)
    monkeypatch.setenv("LLMARCH_TRUST_PICKLE", "1")
    ids = torch.randint(0, 260, (1, 8))
    with torch.no_grad():
        assert torch.equal(llmarch.load(real)(ids).logits, model(ids).logits)


@pytest.mark.parametrize("target", ["dcp/metadata.json", "dcp/__0_0.distcp", "config.json", "tokenizer.json"])
def test_a_payload_in_any_file_of_a_sharded_checkpoint_is_refused(tmp_path, capsys, target):
    marker = tmp_path / "ran"
    folder, _ = sharded_checkpoint(tmp_path / "ckpt")
    assert (folder / target).is_file()
    (folder / target).write_bytes(payload(marker))
    assert_refused(*generate(folder, capsys), marker)


@pytest.mark.parametrize("target", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_payload_in_any_file_of_a_checkpoint_is_refused(tmp_path, capsys, target):
    marker = tmp_path / "ran"
    folder = plain_checkpoint(tmp_path / "ckpt")
    (folder / target).write_bytes(payload(marker))
    assert_refused(*generate(folder, capsys), marker)


def test_malformed_dcp_metadata_is_a_one_line_error(tmp_path, capsys):
    folder, _ = sharded_checkpoint(tmp_path / "ckpt")
    meta = folder / "dcp" / "metadata.json"
    meta.write_text(meta.read_text().replace('"path": "__0_0.distcp"', '"path": "../../escape"'))
    code, err = generate(folder, capsys)
    assert code == 2 and "leaves the folder" in err and len(err.splitlines()) == 1


def test_non_tensor_items_load_weights_only(tmp_path):
    """Optimizer hyper-parameters are stored as DCP byte items: a crafted one is refused, not unpickled."""
    marker = tmp_path / "ran"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"optim": {"lr": Payload(marker)}}, storage_writer=JsonWriter(tmp_path / "dcp"), no_dist=True)
        state = {"optim": {"lr": 0.0}}
        with pytest.raises(LlmarchError, match="refusing stored item optim.lr"):
            load(state, tmp_path / "dcp")
    assert not marker.exists()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = root / "data.txt"
    data.write_text("def f(x):\n    return x + 1\n" * 400)
    assert main(["train", "--model", "gpt-tiny", "--d-model", "16", "--n-layers", "1", "--n-heads", "2",
                 "--context-length", "32", "--tokenizer", "byte", "--vocab-size", "260", "--data", str(data),
                 "--steps", "2", "--eval-every", "2", "--batch-size", "2", "--eval-tokens", "64",
                 "--out", str(root / "run")]) == 0
    return root / "run"


@pytest.mark.parametrize("target", ["optimizer.safetensors", "optimizer.json", "rng.safetensors",
                                    "trainer_state.json", "optimizer.pt"])
def test_resume_reads_no_pickle(run_dir, tmp_path, capsys, target):
    import shutil

    marker = tmp_path / "ran"
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    ckpt = run / "step-000002"
    if target == "optimizer.pt":  # the format of older versions: a torch.save pickle, refused without the opt-in
        (ckpt / "optimizer.safetensors").unlink()
    (ckpt / target).write_bytes(payload(marker))
    code, err = run_cli(["train", "--out", str(run), "--resume", "--steps", "3"], capsys)
    assert_refused(code, err.splitlines()[-1] if err else err, marker)
    assert "Traceback" not in err
