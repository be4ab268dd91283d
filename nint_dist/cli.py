"""``nint``: one command for everything nint_dist does.

    nint fit CONFIG [key=value …]     fit an INR (python -m nint_dist.launch)
    nint ingest INPUT OUT.zarr        a file as a signal store, out of core (python -m nint_dist.ingest)
    nint render RUN_DIR OUT.zarr      the fitted INR on any grid (python -m nint_dist.render)
    nint generate OUT.zarr --shape …  a synthetic signal of any size (python -m nint_dist.generate)
    nint bench --preset smoke         samplers side by side (python -m nint_dist.bench)

``nint fit --help-config`` lists every config key with its type, default and meaning;
``--print-config`` shows the resolved config and ``--dry-run`` the plan, without running.
"""

import argparse
import ast
import dataclasses
import inspect
import sys
import typing

from nint_dist import __version__

COMMANDS = {
    "fit": ("nint_dist.launch", "fit an INR to a signal (validate, train, write the run directory)"),
    "ingest": ("nint_dist.ingest", "write a file as a signal store, chunk by chunk"),
    "render": ("nint_dist.render", "evaluate a fitted INR on any grid: the signal, a crop, super-resolution"),
    "generate": ("nint_dist.generate", "write a synthetic signal of any size"),
    "bench": ("nint_dist.bench", "compare sampling strategies through the same trainer"),
}

OVERRIDE_HELP = (
    "Overrides are key=value pairs over the config file (train.steps=500 model.width=128); every key"
    " exists already, so Hydra's +key=value and ~key forms are not needed: give the key a value, or"
    " its default to reset it."
)


# ---------------------------------------------------------------- the config's own description


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (an attribute docstring), its base
    classes' included (a generated class, such as the sampler section, has no source of its own)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _type_name(annotation) -> str:
    if isinstance(annotation, str):
        return annotation
    if typing.get_origin(annotation) is not None:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "None")


def _keys_of(cls: type, prefix: str) -> list[tuple[str, str, object, str]]:
    keys = []
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):  # a sub-section: its keys, one level down
            keys += _keys_of(type(default), f"{prefix}{f.name}.")
        else:
            keys.append((f"{prefix}{f.name}", _type_name(hints[f.name]), default, docs.get(f.name, "")))
    return keys


def config_keys() -> list[tuple[str, str, object, str]]:
    """Every config key: (dotted key, type, default, docstring), in the dataclasses' order, the
    keys of sub-sections (``sampler.nint.pool_factor``) included."""
    from nint_dist.config import Config

    return _keys_of(Config, "")


def help_config(prefix: str = "") -> str:
    """The ``--help-config`` text: the keys of a section or sub-section (``sampler``,
    ``sampler.nint``), one key, or else every key that starts with ``prefix`` (all when empty)."""
    keys = config_keys()
    section = prefix.rstrip(".")
    chosen = [k for k in keys if k[0] == section or k[0].startswith(f"{section}.")] if section else keys
    chosen = chosen or [k for k in keys if k[0].startswith(prefix)]
    lines = []
    for key, type_name, default, doc in chosen:
        shown = "null" if default is None else repr(default) if isinstance(default, str) else default
        lines.append(f"{key}: {type_name} = {shown}")
        lines += [f"    {line}" for line in doc.splitlines()]
    if not lines:
        from nint_dist.errors import UserError

        raise UserError(
            f"no config key starts with {prefix!r}; sections: data, model, sampler, train, log, run"
        )
    return "\n".join(lines + ["", OVERRIDE_HELP])


# ---------------------------------------------------------------- the plan of a fit, without running it


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if num_bytes < 1024 or unit == "TiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    raise AssertionError


def memory_estimate(cfg, spec, stored_itemsize: int, device_type: str, rows: tuple) -> dict[str, float]:
    """Rough bytes per worker: the largest of the plan's ``rows`` of the signal in the stored
    dtype, the parameters with their gradients and Adam's two moments, and the activations of one
    training pass and one scoring pass (inputs and outputs of every layer, kept for the backward
    or forward-mode pass)."""
    import torch

    from nint_dist.models import build_model, is_dense

    workers = len(rows)
    shard = max(hi - lo for lo, hi in rows) * spec.points_per_row * spec.channels * stored_itemsize
    with torch.device("meta"):
        model = build_model(len(spec.grid), spec.channels, cfg.model)
    params = sum(p.numel() for p in model.parameters())
    value_bytes = 8 if cfg.train.dtype == "float64" else 4
    micro_batch = cfg.train.micro_batch_on(device_type, is_dense(model))
    batch = min(micro_batch, max(1, round(cfg.sampler.ratio * spec.num_points / workers)))
    layer_width = cfg.model.width * cfg.model.layers * value_bytes
    return {
        "signal shard": shard,
        "model, gradients, Adam": 4 * params * value_bytes,
        "training activations": 3 * batch * layer_width,
        "scoring pass": 4 * cfg.sampler.pass_size_on(device_type) * layer_width,
    }


def plan(config_path: str | None, overrides: list[str]) -> str:
    """What ``nint fit`` would do: the plan it resolves (by the same function, without starting
    Ray), checked as far as it can be without writing anything."""
    from nint_dist import launch
    from nint_dist.config import load_config

    cfg = load_config(config_path, overrides)
    resolved = launch.resolve(cfg, connect=False)
    run, spec = resolved.plan, resolved.spec
    rows_text = ", ".join(f"{lo}:{hi}" for lo, hi in run.rows[:8]) + (" …" if run.workers > 8 else "")
    memory = memory_estimate(cfg, spec, resolved.dtype.itemsize, run.device, run.rows)
    k = max(1, round(cfg.sampler.ratio * spec.num_points))
    signal = run.signal if run.signal == run.source else f"{run.signal} (from {run.source})"
    if resolved.resuming:
        state = f"  (holds a run: it would be resumed from step {run.resume_step})"
    else:
        state = "  (new)"
    lines = [
        f"signal:    {signal}  ({spec.kind}, grid {'x'.join(map(str, spec.grid))}, {spec.channels}"
        f" channel(s), {spec.num_points:,} points, {resolved.dtype.name})",
        f"workers:   {run.workers} on {launch.device_words(run)}, backend {run.backend}",
        f"shards:    rows {rows_text} (whole chunks of {spec.chunk_rows} rows)",
        f"model:     {cfg.model.name} {cfg.model.layers}x{cfg.model.width}, {cfg.train.dtype}",
        f"sampler:   {sampler_words(cfg, spec.kind)}, {k:,} points per step ({cfg.sampler.ratio:g} of all),"
        f" {cfg.train.steps} steps" + (f" or {cfg.train.max_seconds:g} s" if cfg.train.max_seconds else ""),
        f"memory:    about {_size(sum(memory.values()))} per worker ("
        + ", ".join(f"{name} {_size(b)}" for name, b in memory.items())
        + ")",
        f"run.dir:   {run.run_dir}{state}",
        "dry run: nothing was written",
    ]
    return "\n".join(lines)


def sampler_words(cfg, kind: str) -> str:
    """The sampler a run of ``cfg`` uses on a signal of ``kind``, and its emphasis if on:
    ``auto`` as what it settles to."""
    from nint_dist.console import sampler_label

    settled = cfg.settled(kind).sampler
    words = sampler_label(settled.name, settled.emphasis.power if settled.emphasis.active else None)
    return f"{cfg.sampler.name} ({words})" if cfg.sampler.name != settled.name else words


def print_config(config_path: str | None, overrides: list[str]) -> str:
    """The config as the run records it in ``config.yaml``: file + overrides, checked. What it
    resolves to on this machine (workers, backend, device, signal store) is the plan: --dry-run."""
    from nint_dist.config import load_config, to_yaml

    return to_yaml(load_config(config_path, overrides)).rstrip()


# ---------------------------------------------------------------- the nint command


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="nint",
        description="Fit implicit neural representations to large signals with exact distributed NINT.",
        epilog="Run 'nint COMMAND --help' for a command's options; 'nint fit --help-config' lists every"
        " config key. " + OVERRIDE_HELP,
    )
    parser.add_argument("--version", action="version", version=f"nint_dist {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # --help, --version, or an unknown command (exit 2)
        parser.print_help()
        return 0
    import importlib

    if argv[0] == "fit":
        from nint_dist import launch

        return launch.main(argv[1:], prog="nint fit")
    return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
