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
