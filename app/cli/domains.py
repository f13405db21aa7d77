"""``launch.py domains build|list|export|import|thresholds|delete``: few-shot classification domains.

``build --name NAME --from-validated [--categories a,b]`` uses the stored embeddings of the
registry's approved objects; ``build --name NAME --folders DIR`` embeds the images of DIR's
class sub-folders with the app's DINOv2 embedder (needs its weights: it fails at once without).
``thresholds NAME --tau1 X --tau2 Y`` overrides the calibrated thresholds (a new pack version,
so ``classify`` re-scores). Packs live in ``<data>/domains/<name>/`` (see docs/classification.md).
"""
from __future__ import annotations

import argparse
import json
import sys

from app.cli.common import add_data_arg, add_json_arg, ensure_data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("domains", help="few-shot classification domains (prototype packs)")
    dsub = p.add_subparsers(dest="domains_command", metavar="ACTION", required=True)

    b = dsub.add_parser("build", help="build a domain from validated objects or from class folders")
    add_data_arg(b)
    b.add_argument("--name", required=True, help="domain name (letters, digits, . _ -)")
    src = b.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-validated", action="store_true", help="approved objects' stored embeddings")
    src.add_argument("--folders", default=None, help="a folder with one sub-folder of images per class")
    b.add_argument("--categories", default=None, help="with --from-validated: only these categories (a,b)")
    b.add_argument("--min-coverage", type=float, default=0.95,
                   help="calibration: share of support items kept known (default 0.95)")
    b.add_argument("--tau1", type=float, default=None, help="override the calibrated s1 threshold")
    b.add_argument("--tau2", type=float, default=None, help="override the calibrated margin threshold")
    b.add_argument("--no-centre", action="store_true", help="no SimpleShot centring")
    b.add_argument("--overwrite", action="store_true", help="replace an existing domain of that name")
    _embedding_args(b)
    add_json_arg(b)
    b.set_defaults(func=run_build)

    ls = dsub.add_parser("list", help="the domains of a data folder")
    add_data_arg(ls)
    add_json_arg(ls)
    ls.set_defaults(func=run_list)

    ex = dsub.add_parser("export", help="copy a domain to OUT (a folder, or OUT.zip)")
    add_data_arg(ex)
    ex.add_argument("name")
    ex.add_argument("out")
    ex.set_defaults(func=run_export)

    im = dsub.add_parser("import", help="import a domain folder or zip")
    add_data_arg(im)
    im.add_argument("path")
    im.add_argument("--name", default=None, help="import under another name")
    im.add_argument("--overwrite", action="store_true", help="replace an existing domain of that name")
    im.set_defaults(func=run_import)

    th = dsub.add_parser("thresholds", help="override a domain's tau1 / tau2 (a new pack version)")
    add_data_arg(th)
    th.add_argument("name")
    th.add_argument("--tau1", type=float, default=None, help="minimum s1 for a known verdict")
    th.add_argument("--tau2", type=float, default=None, help="minimum margin s1 - s2 for a known verdict")
    th.set_defaults(func=run_thresholds)

    de = dsub.add_parser("delete", help="delete a domain")
    add_data_arg(de)
    de.add_argument("name")
    de.set_defaults(func=run_delete)


def _embedding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedding-version", default=None,
                   help="the registry's embedding version (default: the one most stored vectors have, else "
                        "the installed embedder's)")
    p.add_argument("--weights-dir", default=None, help="folder holding model weights (default <data>/models)")
    p.add_argument("--profile", choices=["cpu", "gpu"], default="cpu", help="model sizes (default cpu)")


def open_registry(args: argparse.Namespace, manager=None, *, embedder_first: bool = False):
    """The registry of ``--data`` opened with its embedding identity: ``--embedding-version``,
    else the version most stored embeddings have, else the installed embedder's (no index sync).

    ``embedder_first`` (``--folders``: the pack's vectors come from the installed embedder)
    opens it with the embedder's identity whatever is stored, and says so on stderr when the
    registry's objects were embedded by another model (``classify`` will refuse the pack there).
    """
    from registry.facade import Registry
    from registry.queries import embedding_versions

    data = ensure_data_dir(args.data)
    want = getattr(args, "embedding_version", None)
    with Registry(data, sync_on_write=False) as probe:
        stored = embedding_versions(probe.connection)
    ident = manager.embedding_identity() if embedder_first and manager is not None else None
    if ident and want in (None, ident["embedding_version"]):
        others = sorted({s["version"] for s in stored} - {ident["embedding_version"]})
        if others:
            print(f"note: this registry's objects were embedded by {', '.join(others)}; the folder images by "
                  f"{ident['embedding_version']}: `classify` here will refuse this pack for those objects",
                  file=sys.stderr)
        return Registry(data, sync_on_write=False, **ident)
    match = [s for s in stored if want is None or s["version"] == want]
    if match:
        return Registry(data, embedding_version=match[0]["version"], embedding_dim=match[0]["dim"], sync_on_write=False)
    ident = manager.embedding_identity() if manager is not None else None
    if ident and (want is None or ident["embedding_version"] == want):
        return Registry(data, sync_on_write=False, **ident)
    if want is not None:
        have = [s["version"] for s in stored]
        raise ValueError(f"--embedding-version {want!r}: no stored embeddings of that version here "
                         f"(stored: {have or 'none'}) and the installed embedder is not that version")
    return Registry(data, sync_on_write=False)


def _manager(args: argparse.Namespace):
    from app.cli.models import weights_dir_for
    from pipeline.models.manager import ModelManager

    return ModelManager(profile=args.profile, weights_dir=weights_dir_for(args.data, args.weights_dir))


def run_build(args: argparse.Namespace) -> int:
    from app.workflows import classify as cw

    kw = {"min_coverage": args.min_coverage, "tau1": args.tau1, "tau2": args.tau2, "centre": not args.no_centre,
          "overwrite": args.overwrite}
    if args.folders:
        manager = _manager(args)
        embedder = manager.embedder()  # WeightsMissingError (fast, says how to get them) without weights
        with open_registry(args, manager, embedder_first=True) as reg:
            meta = cw.build_from_folders(reg, embedder, args.name, args.folders, **kw)
    else:
        cats = [c.strip() for c in (args.categories or "").split(",") if c.strip()] or None
        with open_registry(args) as reg:
            meta = cw.build_from_validated(reg, args.name, categories=cats, **kw)
    if args.json:
        print(json.dumps(meta, indent=2, ensure_ascii=False))
    else:
        print(describe(meta))
    return 0


def describe(meta: dict) -> str:
    """One domain, for people: classes with counts, thresholds and the calibration point."""
    cal = meta.get("calibration") or {}
    counts = ", ".join(f"{c} {n}" for c, n in meta["counts"].items())
    text = (f"domain {meta['domain']}@{meta['version']}: {len(meta['classes'])} classes ({counts}); "
            f"{meta['embedding_model']} {meta['embedding_dim']}-d; tau1 {meta['tau1']:.4f}, tau2 {meta['tau2']:.4f}")
    if cal:
        text += (f"\n  calibration (leave-one-out on {cal.get('items')} support items): accuracy "
                 f"{cal.get('accuracy', 0):.3f} at coverage {cal.get('coverage', 0):.3f} "
                 f"(target >= {cal.get('min_coverage')}; no rejection: accuracy {cal.get('loo_accuracy', 0):.3f})")
    return text


def run_list(args: argparse.Namespace) -> int:
    from registry.domains import list_domains

    found = list_domains(ensure_data_dir(args.data))
    if args.json:
        print(json.dumps(found, indent=2, ensure_ascii=False))
        return 0
    if not found:
        print("no domains (build one with `domains build --name NAME --from-validated`)")
    for d in found:
        if "error" in d:
            print(f"{d['domain']}: BROKEN: {d['error']}")
        else:
            print(f"{d['domain']}@{d['version']}  {len(d['classes'])} classes, {sum(d['counts'].values())} support, "
                  f"{d['embedding_model']} {d['embedding_dim']}-d, created {d['created_at']}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from registry.domains import export_domain

    print(f"exported to {export_domain(ensure_data_dir(args.data), args.name, args.out)}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from registry.domains import import_domain

    meta = import_domain(ensure_data_dir(args.data), args.path, name=args.name, overwrite=args.overwrite)
    print(f"imported domain {meta['domain']}@{meta['version']} ({len(meta['classes'])} classes)")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from registry.domains import delete_domain

    delete_domain(ensure_data_dir(args.data), args.name)
    print(f"deleted domain {args.name}")
    return 0


def run_thresholds(args: argparse.Namespace) -> int:
    from registry.domains import set_thresholds

    if args.tau1 is None and args.tau2 is None:
        raise ValueError("domains thresholds: expected --tau1 and/or --tau2, got neither")
    meta = set_thresholds(ensure_data_dir(args.data), args.name, tau1=args.tau1, tau2=args.tau2)
    print(describe(meta))
    return 0
