"""`smollm2.reading_once`: each GGUF file parsed once, each tensor name map built once, originals restored."""

import gguf

from sft_course import smollm2


def test_reading_once_parses_each_file_once_and_restores(monkeypatch, tmp_path):
    calls = []

    def counting_reader(path, *args, **kwargs):
        calls.append((str(path), args))
        return object()

    monkeypatch.setattr(gguf, "GGUFReader", counting_reader)
    monkeypatch.setattr(smollm2, "_READERS", {})
    path = tmp_path / "model.gguf"
    with smollm2.reading_once():
        first, again = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        writable = gguf.GGUFReader(path, "r+")
    assert first is again and writable is not first
    assert calls == [(str(path.resolve()), ()), (str(path), ("r+",))]
    assert gguf.GGUFReader is counting_reader


def test_reading_once_builds_each_name_map_once():
    original = gguf.get_tensor_name_map
    arch = gguf.MODEL_ARCH.LLAMA
    with smollm2.reading_once():
        first, again = gguf.get_tensor_name_map(arch, 2), gguf.get_tensor_name_map(arch, 2)
    assert first is again
    assert first.mapping == original(arch, 2).mapping
    assert gguf.get_tensor_name_map is original


def test_load_tokenizer_converts_once_and_returns_copies(monkeypatch, tmp_path):
    import transformers

    class Tok:
        def __init__(self):
            self.added = []

    calls = []
    monkeypatch.setattr(smollm2, "gguf_folder", lambda: tmp_path)
    monkeypatch.setattr(smollm2, "_TOKENIZERS", {})
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: calls.append((a, k)) or Tok())
    first, second = smollm2.load_tokenizer(), smollm2.load_tokenizer()
    first.added.append("<|pad|>")
    assert len(calls) == 1 and calls[0] == ((str(tmp_path),), {"gguf_file": smollm2.GGUF_FILE})
    assert first is not second and second.added == []
