"""llmarch's GGUF parser (interop/gguf_file.py) against the gguf package's own reader, the reference: the same
metadata values and the same tensor table and bytes, for every value type and tensor type; and damaged files
named as such."""
import numpy as np
import pytest
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, quants

from fixtures_gguf import smollm2_gguf  # noqa: F401 (a fixture)
from llmarch.errors import LlmarchError
from llmarch.interop import gguf_blocks
from llmarch.interop.gguf import open_gguf
from llmarch.interop.gguf_file import GGUFFile, GGUFFormatError

FLOAT_TYPES = {GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
               GGMLQuantizationType.F64: np.float64, GGMLQuantizationType.I8: np.int8,
               GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
               GGMLQuantizationType.I64: np.int64}


def same_as_reference(path) -> GGUFFile:
    ref, ours = GGUFReader(path), GGUFFile(str(path))
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}  # the reader's own counters
    assert list(fields) == list(ours.fields)
    for key, f in fields.items():
        assert ours.fields[key].contents() == f.contents(), key
    assert [t.name for t in ref.tensors] == [t.name for t in ours.tensors]
    for a, b in zip(ref.tensors, ours.tensors):
        assert (a.tensor_type, list(a.shape), a.n_elements, a.n_bytes, a.data_offset) == \
            (b.tensor_type, list(b.shape), b.n_elements, b.n_bytes, b.data_offset), a.name
        assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape, a.name
        assert np.array_equal(a.data, b.data), a.name
    return ours


def write_every_kind(path, alignment: int | None = None):
    """Every metadata value type, and a tensor of every type GGUF has (random bytes for the block types: the
    parser reads their layout, not their values)."""
    rng = np.random.default_rng(0)
    w = GGUFWriter(str(path), "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    for kind, value in ((GGUFValueType.UINT8, 200), (GGUFValueType.INT8, -5), (GGUFValueType.UINT16, 60000),
                        (GGUFValueType.INT16, -3000), (GGUFValueType.UINT32, 4_000_000_000),
                        (GGUFValueType.INT32, -7), (GGUFValueType.FLOAT32, 0.25), (GGUFValueType.BOOL, True),
                        (GGUFValueType.UINT64, 2**40), (GGUFValueType.INT64, -2**40),
                        (GGUFValueType.FLOAT64, 1e-300), (GGUFValueType.STRING, "héllo ▁wörld")):
        w.add_key_value(f"test.{kind.name.lower()}", value, kind)
    w.add_array("test.strings", ["a", "", "ü" * 300, "<|im_start|>"])
    w.add_array("test.ints", list(range(-5, 1000)))
    w.add_array("test.floats", [0.5, -1.25, 3.0])
    w.add_array("test.bools", [True, False])
    for kind in GGMLQuantizationType:
        block, size = GGML_QUANT_SIZES[kind]
        rows, cols = 3, 2 * block
        if kind in FLOAT_TYPES:
            w.add_tensor(f"t.{kind.name}", (rng.standard_normal((rows, cols)) * 50).astype(FLOAT_TYPES[kind]))
        else:
            raw = rng.integers(0, 256, (rows, cols // block * size), dtype=np.uint8)
            w.add_tensor(f"t.{kind.name}", raw, raw_dtype=kind)  # the shape in bytes per row
    w.add_tensor("t.vector", rng.standard_normal(5).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("alignment", [None, 64])
def test_every_value_and_tensor_type_reads_as_the_reference_reads_it(tmp_path, alignment):
    write_every_kind(tmp_path / "all.gguf", alignment)
    ours = same_as_reference(tmp_path / "all.gguf")
    assert ours.fields["test.string"].contents() == "héllo ▁wörld"
    assert ours.fields["test.ints"].contents()[:3] == [-5, -4, -3]
    assert len(ours.tensors) == len(GGMLQuantizationType) + 1


def test_smollm2_reads_as_the_reference_reads_it(smollm2_gguf):  # noqa: F811
    ours = same_as_reference(smollm2_gguf)
    assert len(ours.fields["tokenizer.ggml.tokens"].contents()) == 49152


def test_damaged_files_are_named(tmp_path):
    write_every_kind(tmp_path / "ok.gguf")
    data = (tmp_path / "ok.gguf").read_bytes()
    header = len(data) - sum(t.n_bytes for t in GGUFFile(str(tmp_path / "ok.gguf")).tensors) - 64
    cases = {"empty": (b"", "empty"), "magic": (b"GGML" + data[4:], "magic"),
             "version": (data[:4] + (7).to_bytes(4, "little") + data[8:], "version 7"),
             "big": (data[:4] + (3).to_bytes(4, "big") + data[8:], "big-endian"),
             "header": (data[:header // 2], "ends early|runs past"),
             "data": (data[:len(data) - 100], "runs past the end")}
    for name, (content, text) in cases.items():
        (tmp_path / f"{name}.gguf").write_bytes(content)
        with pytest.raises(GGUFFormatError, match=text):
            GGUFFile(str(tmp_path / f"{name}.gguf"))
        with pytest.raises(LlmarchError, match="truncated or corrupt GGUF"):
            open_gguf(tmp_path / f"{name}.gguf")
    bad_type = bytearray(data)
    first = GGUFFile(str(tmp_path / "ok.gguf")).tensors[0]
    at = data.index(first.name.encode()) + len(first.name) + 4 + 8 * len(first.shape)  # the record's type
    bad_type[at:at + 4] = (99).to_bytes(4, "little")
    (tmp_path / "type.gguf").write_bytes(bytes(bad_type))
    with pytest.raises(GGUFFormatError, match=f"tensor '{first.name}' has unknown tensor type 99"):
        GGUFFile(str(tmp_path / "type.gguf"))


@pytest.mark.parametrize("kind", [GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1])
def test_plain_blocks_dequantize_as_the_gguf_package_does(kind):
    """gguf_blocks decodes these three in torch; the gguf package is the reference, to the bit (fp16 scales
    of every magnitude, subnormal and zero included)."""
    rng = np.random.default_rng(0)
    w = (rng.standard_t(3, size=(48, 256)) * np.exp(rng.uniform(-20, 5, size=(48, 1)))).astype(np.float32)
    w[0] = 0
    data = quants.quantize(w, kind)
    ours = gguf_blocks.dequantize(data, kind.name)
    assert ours.dtype == torch.float32 and ours.shape == (48, 256)
    assert np.array_equal(ours.numpy(), quants.dequantize(data, kind))
    assert gguf_blocks.dequantize(data, "Q5_0") is None  # the rest stay the gguf package's


def test_damaged_metadata_and_dims(tmp_path):
    """A key twice, a tensor whose dims multiply past 2**64 (which must not wrap round past the bounds check),
    and a non-UTF-8 value: the file opens, and reading that one field names it."""
    w = GGUFWriter(str(tmp_path / "ok.gguf"), "llama")
    w.add_string("test.aaa", "one")
    w.add_string("test.aab", "two")
    w.add_string("general.description", "XXXX")
    w.add_tensor("t", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = (tmp_path / "ok.gguf").read_bytes()
    twice = data.replace(b"test.aab", b"test.aaa")
    dims = (4).to_bytes(8, "little") + (32).to_bytes(8, "little")
    huge = data[:data.rindex(dims[8:] + dims[:8])] + (2**32).to_bytes(8, "little") * 2 + \
        data[data.rindex(dims[8:] + dims[:8]) + 16:]
    for name, content, text in (("twice", twice, "'test.aaa' appears twice"), ("huge", huge, "runs past the end")):
        (tmp_path / f"{name}.gguf").write_bytes(content)
        with pytest.raises(GGUFFormatError, match=text):
            GGUFFile(str(tmp_path / f"{name}.gguf"))
    (tmp_path / "latin.gguf").write_bytes(data.replace(b"XXXX", b"\xff\xfe\xfd\xfc"))
    f = GGUFFile(str(tmp_path / "latin.gguf"))
    assert f.fields["test.aab"].contents() == "two"
    with pytest.raises(GGUFFormatError, match="'general.description': the string at byte .* is not UTF-8"):
        f.fields["general.description"].contents()
