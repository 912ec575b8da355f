"""Datasets on disk: the official annotation format (read by the trainer's own parser), determinism, the
held-out benchmark, and ``videollama3 synth``."""

from __future__ import annotations

import json

import pytest

from videollama3.cli import main as cli_main
from videollama3.synthetic import writer
from videollama3.synthetic.writer import WorldSpec, write_benchmark, write_dataset
from videollama3.training.annotations import AnnotationFile, check_media_exists, record_to_conversation


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    write_dataset(out, WorldSpec(seed=3, images=6, videos=3, texts=4, system_ratio=0.5), progress=False)
    return out


def test_annotations_are_read_by_the_trainer(dataset):
    counts = {}
    for name in writer.ANNOTATION_FILES:
        records = list(AnnotationFile(dataset / name))
        counts[name] = len(records)
        for record in records:
            check_media_exists(record, dataset)
            messages = record_to_conversation(record, dataset)
            assert messages[-1]["role"] == "assistant"
            media = [c for m in messages if m["role"] == "user" for c in m["content"] if c["type"] != "text"]
            if name.startswith("image"):
                assert [c["type"] for c in media] == ["image"]
            elif name.startswith("video"):
                assert [c["type"] for c in media] == ["video"]
            else:
                assert media == [] and "image" not in record and "video" not in record
    assert counts == {
        "image_captions.jsonl": 6,
        "video_captions.jsonl": 3,
        "image_qa.jsonl": 6,
        "video_qa.jsonl": 3,
        "text.jsonl": 4,
    }
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["spec"]["seed"] == 3


def test_first_turn_format(dataset):
    record = json.loads((dataset / "video_qa.jsonl").read_text().splitlines()[0])
    turns = [t for t in record["conversations"] if t["from"] != "system"]
    assert turns[0]["value"].startswith("<video>\n") and record["video"] == ["videos/000000.mp4"]
    assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
    record = json.loads((dataset / "image_qa.jsonl").read_text().splitlines()[0])
    turns = [t for t in record["conversations"] if t["from"] != "system"]
    assert turns[0]["value"].startswith("<image>\n") and record["image"] == "images/000000.png"


def test_items_do_not_depend_on_the_dataset_size(dataset, tmp_path):
    write_dataset(tmp_path, WorldSpec(seed=3, images=2, videos=1, texts=1, system_ratio=0.5), progress=False)
    for name in writer.ANNOTATION_FILES:
        small = (tmp_path / name).read_text().splitlines()
        large = (dataset / name).read_text().splitlines()
        assert small == large[: len(small)]
    assert (tmp_path / "images/000001.png").read_bytes() == (dataset / "images/000001.png").read_bytes()


def test_benchmark_is_held_out_and_round_trips(tmp_path):
    file = write_benchmark(tmp_path, seed=0, images=4, videos=2, texts=2, progress=False)
    items = writer.read_benchmark(tmp_path)
    assert file.is_file() and [i.modality for i in items] == ["image"] * 4 + ["video"] * 2 + ["text"] * 2
    assert all((tmp_path / i.media).is_file() for i in items if i.media)
    again = writer.benchmark_items(0, 4, 2, 2)
    assert [i.to_dict() for i in again] == [i.to_dict() for i in items]
    # Other seeds than training's: the scenes differ from training items with the same index.
    from videollama3.synthetic import world

    assert world.sample_image_scene(writer.BENCHMARK_SEED_OFFSET, 0) != world.sample_image_scene(0, 0)


def test_synth_command(tmp_path, capsys):
    assert cli_main(["synth", "--out", str(tmp_path / "d"), "--images", "2", "--videos", "1", "--no-progress"]) == 0
    assert "wrote 2 images, 1 videos, 1 text samples" in capsys.readouterr().out
    assert len(list((tmp_path / "d" / "videos").iterdir())) == 1
    assert (
        cli_main(
            ["synth", "--out", str(tmp_path / "b"), "--benchmark", "--images", "1", "--videos", "1", "--no-progress"]
        )
        == 0
    )
    assert (tmp_path / "b" / "benchmark.jsonl").is_file()
    assert cli_main(["synth", "--out", str(tmp_path / "d"), "--images", "-1"]) == 2


def test_benchmark_cache_is_keyed_by_the_generator(tmp_path):
    """A benchmark written by another version of the world is never reused."""
    from videollama3.synthetic.benchmark import benchmark_dir, generator_fingerprint

    folder = benchmark_dir(0, 3, 2, 1, root=tmp_path)
    assert folder.parent == tmp_path and folder.name == f"seed0-i3-v2-t1-{generator_fingerprint()}"
    assert len(generator_fingerprint()) == 12


def test_stale_world_data_is_not_reused(dataset, tmp_path):
    """Data rendered by another generator version or for another spec stops the recipe with the reason;
    nothing is deleted (it once was silently trained on)."""
    import shutil

    from videollama3.distributed import DistEnv
    from videollama3.errors import ConfigError
    from videollama3.training.recipe import load_recipe
    from videollama3.training.runner import prepare_world

    spec = WorldSpec(seed=3, images=6, videos=3, texts=4, system_ratio=0.5)
    assert writer.dataset_mismatch(dataset, spec) is None
    assert "another world spec (images 6 vs 7)" in writer.dataset_mismatch(
        dataset, WorldSpec(**{**vars(spec), "images": 7})
    )

    data = tmp_path / "run" / "data"
    shutil.copytree(dataset, data)
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps({**meta, "generator": "0123456789ab"}))
    recipe = load_recipe("synthetic", [f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=r"world.data_dir .*another version of the world generator \(0123456789ab"):
        prepare_world(recipe, DistEnv())
    assert (data / "meta.json").is_file() and (data / "image_qa.jsonl").is_file()


def test_media_of_another_generator_is_rendered_again(tmp_path):
    spec = WorldSpec(seed=1, images=2, videos=0, texts=0)
    write_dataset(tmp_path, spec, progress=False)
    image = tmp_path / "images" / "000000.png"
    image.write_bytes(b"stale")
    write_dataset(tmp_path, spec, progress=False)  # same generator: existing media are kept
    assert image.read_bytes() == b"stale"
    meta = json.loads((tmp_path / "meta.json").read_text())
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "generator": "0123456789ab"}))
    write_dataset(tmp_path, spec, progress=False)
    assert image.read_bytes() != b"stale" and writer.dataset_mismatch(tmp_path, spec) is None


def test_initial_model_built_otherwise_is_not_reused(tmp_path):
    """An initial model with another seed or perception pretraining stops the recipe before any work; it is kept."""
    from videollama3.distributed import DistEnv
    from videollama3.errors import ConfigError
    from videollama3.training.recipe import load_recipe
    from videollama3.training.runner import prepare_world

    init = tmp_path / "run" / "init"
    init.mkdir(parents=True)
    (init / "config.json").write_text("{}")
    (init / "synthetic_model.json").write_text(json.dumps({"seed": 0, "perception_steps": 17}))
    recipe = load_recipe("synthetic", [f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=r"world.init_dir .*built with perception_steps 17 vs \d+"):
        prepare_world(recipe, DistEnv())
    assert not (tmp_path / "run" / "data").exists() and (init / "config.json").is_file()
    (init / "synthetic_model.json").unlink()
    with pytest.raises(ConfigError, match=r"world.init_dir .*no synthetic_model.json"):
        prepare_world(recipe, DistEnv())
