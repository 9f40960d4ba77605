"""`evalsuite tasks`: list bundled and user tasks, or describe any task by name."""

from __future__ import annotations

import dataclasses

from ._common import CliError, add_json_arg, emit_records, parse_list


def register(sub) -> None:
    p = sub.add_parser("tasks", help="list tasks (bundled, --include-path, or lm-eval names)")
    p.add_argument("names", nargs="*", help="describe these tasks (any lm-eval task name works)")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="folder of user task YAMLs (repeatable)")
    add_json_arg(p)
    p.set_defaults(func=run)


def make_registry(include_paths, data_dir=None, skip_bad_items=False):
    """The task registry for these folders; ``skip_bad_items`` drops and counts bad local
    records instead of refusing them (:class:`~evalsuite.tasks.registry.TaskRegistry`)."""
    from ..tasks.registry import TaskError, TaskRegistry

    try:
        return TaskRegistry(include_paths=include_paths, data_dir=data_dir,
                            skip_bad_items=skip_bad_items)
    except TaskError as e:
        raise CliError(str(e)) from e


def resolve_specs(registry, names):
    from ..tasks.registry import TaskError

    try:
        return [registry.get(n) for n in names]
    except TaskError as e:
        raise CliError(str(e)) from e


def run(args) -> int:
    registry = make_registry(args.include_path)
    names = [n for arg in args.names for n in parse_list(arg)] or registry.names()
    specs = resolve_specs(registry, names)
    records = [{k: v for k, v in dataclasses.asdict(s).items() if k != "description"} |
               {"description": s.description} for s in specs]
    cols = ["name", "lm_eval_task", "output_type", "primary_metric", "chance", "version", "source"]
    emit_records(records, columns=None if args.json else cols, as_json=args.json)
    return 0
