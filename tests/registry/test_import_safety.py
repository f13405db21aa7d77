"""Import safety (issue 9 #6, #7, #9, #10, #13): hostile or careless files give one line per
item, never a traceback, never a file from outside the images folder, never a bomb."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import image_header
from registry.importers.coco_import import import_coco
from registry.importers.yolo_import import import_yolo
from tests.registry.export_helpers import H, W, open_registry, write_image

ROOT = Path(__file__).resolve().parents[2]


def _launch(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "launch.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _coco(root: Path, images: list[dict], annotations: list[dict], categories: list[dict] | None = None) -> Path:
    path = root / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": categories or [{"id": 1, "name": "cat"}]}))
    return path


def _good_images(root: Path, n: int) -> tuple[list[dict], list[dict]]:
    images, anns = [], []
    for i in range(n):
        write_image(root / "images" / f"g{i}.png", seed=500 + i)
        images.append({"id": i + 1, "file_name": f"g{i}.png", "width": W, "height": H})
        anns.append({"id": 100 + i, "image_id": i + 1, "category_id": 1, "bbox": [2, 2, 10, 10]})
    return images, anns


# -- #6 YAML bombs and non-plain data.yaml ------------------------------------------------------
_ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
names: *h
train: images
"""


@pytest.mark.parametrize("text, message", [
    (_ALIAS_BOMB, "anchors or aliases"),
    ("names: &n [a, b]\ntrain: images\nval: *n\n", "anchors or aliases"),
    ("names: [a, {x: 1}]\ntrain: images\n", "class 1 name must be a plain string"),
    ("names: [a, [b, c]]\ntrain: images\n", "class 1 name must be a plain string"),
    (f"names: [a, {'x' * 201}]\ntrain: images\n", "201 characters"),
    ("names: [a]\ntrain: {x: 1}\n", "expected 'train' as a folder"),
    ("names: [a]\ntrain: 5\n", "expected 'train' as a folder"),
    ("names: [a]\ntrain: [images, [1]]\n", "expected 'train' as a folder"),
    ("names: [a]\ntrain: images\npath: [1]\n", "expected 'path' as a folder"),
])
def test_bad_data_yaml_is_one_line_naming_the_file(data_dir, tmp_path, text, message):
    yml = tmp_path / "data.yaml"
    yml.write_text(text)
    with open_registry(data_dir) as reg:
        with pytest.raises(ValueError, match=message) as err:
            import_yolo(reg, yml)
        assert "data.yaml" in str(err.value) and "\n" not in str(err.value)
        assert reg.count_sources() == 0 and reg.list_categories() == []


def test_oversized_data_yaml_refused_without_parsing(data_dir, tmp_path):
    yml = tmp_path / "data.yaml"
    yml.write_text("names: [a]\ntrain: images\n# " + "x" * (1 << 20) + "\n")
    with open_registry(data_dir) as reg, pytest.raises(ValueError, match="at most 1,048,576"):
        import_yolo(reg, yml)


def test_alias_bomb_through_the_cli_is_one_line(data_dir, tmp_path):
    (tmp_path / "data.yaml").write_text(_ALIAS_BOMB)
    res = _launch("import", "--data", str(data_dir), "--format", "yolo", str(tmp_path / "data.yaml"))
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert "data.yaml uses YAML anchors or aliases" in res.stderr


@pytest.mark.parametrize("entry", ["{a: 1}", "7", "[[1, 2]]"])
def test_yolo_split_of_the_wrong_type_through_the_cli(data_dir, tmp_path, entry):
    (tmp_path / "data.yaml").write_text(f"names: [a]\ntrain: {entry}\n")
    res = _launch("import", "--data", str(data_dir), "--format", "yolo", str(tmp_path / "data.yaml"))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert "expected 'train' as a folder or .txt path" in res.stderr


# -- #7 path traversal --------------------------------------------------------------------------
def _outside_cases(tmp_path: Path) -> tuple[Path, list[dict], list[dict]]:
    root = tmp_path / "ds"
    images, anns = _good_images(root, 1)
    outside = write_image(tmp_path / "secret" / "outside.png", seed=900)
    write_image(tmp_path / "secret" / "abs.png", seed=901)
    link_target = write_image(tmp_path / "secret" / "linked.png", seed=902)
    (root / "images" / "link.png").symlink_to(link_target)
    images += [
        {"id": 2, "file_name": "../../secret/outside.png", "width": W, "height": H},
        {"id": 3, "file_name": str(tmp_path / "secret" / "abs.png"), "width": W, "height": H},
        {"id": 4, "file_name": "link.png", "width": W, "height": H},
    ]
    anns += [{"id": 200 + k, "image_id": k, "category_id": 1, "bbox": [1, 1, 8, 8]} for k in (2, 3, 4)]
    assert outside.is_file()
    return root, images, anns


def test_file_names_leaving_the_images_folder_are_refused(data_dir, tmp_path):
    root, images, anns = _outside_cases(tmp_path)
    path = _coco(root, images, anns)
    with open_registry(data_dir) as reg:
        report = import_coco(reg, path, images_dir=root / "images")
        assert report.images_registered == 1 and report.objects_imported == 1
        refused = [item for item, reason in report.errors if "points outside the images folder" in reason]
        assert len(refused) == 3, report.errors
        assert {s["file_name"] for s in reg.list_sources()} == {"g0.png"}
        media = {p.name for p in (data_dir / "media").rglob("*") if p.is_file()}
        assert len(media) == 1


def test_outside_images_allowed_with_the_flag(data_dir, tmp_path):
    root, images, anns = _outside_cases(tmp_path)
    path = _coco(root, images, anns)
    res = _launch("import", "--data", str(data_dir), "--format", "coco", str(path),
                  "--images", str(root / "images"), "--allow-outside-images", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert out["images_registered"] == 4 and out["objects_imported"] == 4 and out["errors"] == []


# -- #9 unhashable / non-integer ids ------------------------------------------------------------
def test_unhashable_ids_are_reported_per_item(data_dir, tmp_path):
    root = tmp_path / "ds"
    images, anns = _good_images(root, 2)
    write_image(root / "images" / "listid.png", seed=77)
    images.append({"id": [1], "file_name": "listid.png", "width": W, "height": H})
    anns += [
        {"id": 300, "image_id": [1], "category_id": 1, "bbox": [1, 1, 5, 5]},
        {"id": 301, "image_id": 1, "category_id": {"a": 1}, "bbox": [1, 1, 5, 5]},
        {"id": 302, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": {"x": 1}},
    ]
    cats = [{"id": 1, "name": "cat"}, {"id": {"x": 2}, "name": "dog"}]
    path = _coco(root, images, anns, cats)
    res = _launch("import", "--data", str(data_dir), "--format", "coco", str(path), "--json")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    out = json.loads(res.stdout)
    assert out["objects_imported"] == 2 and out["images_registered"] == 2
    reasons = {e["item"]: e["reason"] for e in out["errors"]}
    assert any("expected an integer id, got [1]" in r and "listid.png" in i for i, r in reasons.items())
    assert "expected an integer image_id, got [1]" in reasons["annotation 300"]
    assert "expected an integer category_id, got {'a': 1}" in reasons["annotation 301"]
    assert any("expected an integer id" in r and "dog" in i for i, r in reasons.items())
    assert any("302" in i for i in reasons)


_ODD_VALUES = [None, 1, -1, 0, 1.5, "x", "", [], [1], [1, 2, 3, 4], [[1, 2, 3]], {}, {"a": 1},
               {"size": [H, W]}, {"size": [H, W], "counts": 5}, {"size": [H, W], "counts": "zz"},
               {"size": "ab", "counts": [1]}, {"size": [H, W], "counts": [1, 2, "x"]}, True,
               [[1, 1, 2, 2, 3, "a"]], ["a"], [None] * 4, 10**30]


def test_odd_values_anywhere_never_escape_as_tracebacks(data_dir, tmp_path):
    """Randomised: any field of an image, annotation or category replaced by an odd JSON value
    gives per-item errors (or a one-line ValueError for the file), never another exception."""
    import random

    rng = random.Random(0)
    root = tmp_path / "ds"
    write_image(root / "images" / "a.png", seed=1)
    outcomes = {"refused": 0, "item errors": 0, "clean": 0}
    with open_registry(data_dir) as reg:
        for _trial in range(80):
            img = {"id": 1, "file_name": "a.png", "width": W, "height": H}
            ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}
            cat = {"id": 1, "name": "cat"}
            for entry, keys, p in ((img, ("id", "file_name", "width", "height"), 0.15),
                                   (ann, ("id", "image_id", "category_id", "bbox", "segmentation", "score"), 0.3),
                                   (cat, ("id", "name", "supercategory"), 0.15)):
                for k in keys:
                    if rng.random() < p:
                        entry[k] = rng.choice(_ODD_VALUES)
            path = _coco(root, [img], [ann], [cat])
            try:
                report = import_coco(reg, path)
            except ValueError as exc:
                assert "\n" not in str(exc) and str(exc)
                outcomes["refused"] += 1
                continue
            assert all(isinstance(r, str) and "\n" not in r and r for _i, r in report.errors)
            outcomes["item errors" if report.errors else "clean"] += 1
    # both outcomes were exercised (odd values are reported per item; none refuses the file)
    assert outcomes["item errors"] >= 10 and outcomes["clean"] >= 3, outcomes


# -- #10 duplicates and bad category names ------------------------------------------------------
def test_duplicate_image_ids_are_reported_not_dropped(data_dir, tmp_path):
    root = tmp_path / "ds"
    images, anns = _good_images(root, 3)
    images[2]["id"] = 2  # g1.png and g2.png share id 2
    anns = anns[:2]
    with open_registry(data_dir) as reg:
        report = import_coco(reg, _coco(root, images, anns))
        reasons = " | ".join(f"{i}: {r}" for i, r in report.errors)
        assert "g1.png" in reasons and "g2.png" in reasons and "used twice" in reasons
        assert "refers to image id 2, which is used twice" in reasons
        assert report.images_registered == 1 and report.objects_imported == 1
        assert report.images_seen == 3
        assert "no errors" not in report.summary()


def test_bad_category_name_skips_only_its_annotations(data_dir, tmp_path):
    root = tmp_path / "ds"
    images, anns = _good_images(root, 2)
    anns.append({"id": 400, "image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10]})
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "bad\x00name"}, {"id": 3, "name": ""}]
    with open_registry(data_dir) as reg:
        report = import_coco(reg, _coco(root, images, anns, cats))
        assert report.objects_imported == 2
        assert [c["name"] for c in reg.list_categories()] == ["cat"]
        reasons = dict(report.errors)
        assert "control/invisible" in reasons["annotation 400"]
        assert any("bad" in i and "its annotations are skipped" in r for i, r in report.errors)


def test_categories_are_created_inside_the_import_transaction(data_dir, tmp_path):
    root = tmp_path / "ds"
    images, anns = _good_images(root, 2)
    path = _coco(root, images, anns, [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
    with open_registry(data_dir) as reg:
        real = reg.register_source

        def killed(*args, **kwargs):
            raise KeyboardInterrupt  # as if the process died inside the first batch

        reg.register_source = killed
        with pytest.raises(KeyboardInterrupt):
            import_coco(reg, path)
        assert reg.list_categories() == []  # rolled back with the batch
        reg.register_source = real
        report = import_coco(reg, path)
        assert [c["name"] for c in reg.list_categories()] == ["cat", "dog"]
        assert report.objects_imported == 2


def test_bad_yolo_class_name_skips_only_its_labels(data_dir, tmp_path):
    img = write_image(tmp_path / "images" / "train" / "a.png", seed=3)
    label = tmp_path / "labels" / "train" / "a.txt"
    label.parent.mkdir(parents=True)
    label.write_text("0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n")
    (tmp_path / "data.yaml").write_text('names: ["ok", "tab\\u200bbed"]\ntrain: images/train\n')
    with open_registry(data_dir) as reg:
        report = import_yolo(reg, tmp_path / "data.yaml")
        assert report.objects_imported == 1 and img.is_file()
        assert [c["name"] for c in reg.list_categories()] == ["ok"]
        assert any("a.txt object 2" in i and "refused name" in r for i, r in report.errors)


# -- #13 one pixel limit, messages a person can act on -------------------------------------------
def test_one_pixel_limit_for_import_register_and_the_loader(data_dir, tmp_path):
    from pipeline.image_io import DEFAULT_MAX_PIXELS

    assert DEFAULT_MAX_PIXELS == image_header.MAX_IMAGE_PIXELS == 100_000_000
    root = tmp_path / "ds"
    images, anns = _good_images(root, 1)
    Image.new("1", (12000, 12000)).save(root / "images" / "huge.png")  # 144 MP, a few kB
    images.append({"id": 9, "file_name": "huge.png", "width": 12000, "height": 12000})
    with open_registry(data_dir) as reg:
        report = import_coco(reg, _coco(root, images, anns))
        assert report.images_registered == 1
        reasons = dict(report.errors)
        msg = reasons["image 9 ('huge.png')"]
        assert "144,000,000 pixels, above the limit of 100,000,000" in msg and "downscale" in msg
        assert str(tmp_path) not in msg  # the file's name, never a server path
        with pytest.raises(ValueError, match="above the limit of 100,000,000") as err:
            reg.register_source(root / "images" / "huge.png")
        assert "pass width/height" not in str(err.value)  # that would not help
        with pytest.raises(ValueError, match="above the limit of 100,000,000"):
            reg.register_source(write_image(tmp_path / "small.png", seed=5), width=12000, height=12000)
        assert reg.count_sources() == 1


def test_string_sizes_in_the_json_are_named_as_such(data_dir, tmp_path):
    root = tmp_path / "ds"
    images, anns = _good_images(root, 2)
    images[1]["width"], images[1]["height"] = str(W), str(H)
    with open_registry(data_dir) as reg:
        report = import_coco(reg, _coco(root, images, anns))
        msg = dict(report.errors)["image 2 ('g1.png')"]
        assert f"width='{W}' (str)" in msg and "positive integers" in msg
        assert "but the file is" not in msg
        assert report.images_registered == 1
