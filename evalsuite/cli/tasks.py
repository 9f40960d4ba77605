"""`evalsuite tasks`: list bundled and user tasks, or describe any task by name."""

from __future__ import annotations

import dataclasses

from ._common import CliError, add_data_args, add_json_arg, data_dir_from, emit_records, parse_list


def register(sub) -> None:
    p = sub.add_parser("tasks", help="list tasks (bundled, --include-path, or lm-eval names), "
                                     "or export them as plain lm-eval YAML")
    p.add_argument("names", nargs="*", help="describe these tasks (any lm-eval task name works)")
    add_data_args(p)
    p.add_argument("--offline", action="store_true",
                   help="list every task (bundled, user, lm-eval's) whose documents the data "
                        "folder holds: these run with no network")
    p.add_argument("--export", metavar="DIR", default=None,
                   help="write each named task as a plain lm-eval task YAML (with its local data "
                        "when --data-dir is given) into DIR, for `lm_eval --include_path DIR`")
    p.add_argument("--prefix", default="",
                   help="with --export: prefix of the exported task names (e.g. es_), so they "
                        "never shadow lm-eval's own tasks of the same name")
    p.add_argument("--max-items", type=int, default=None, metavar="N",
                   help="with --export and local data: keep the first N evaluation records")
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
    data_dir = data_dir_from(args)
    registry = make_registry(args.include_path, data_dir)
    names = [n for arg in args.names for n in parse_list(arg)]
    if args.offline:
        if data_dir is None:
            raise CliError("--offline lists what a data folder holds: pass --data-dir DIR (or set "
                           "EVALSUITE_DATA_DIR); none was found at ../shared/data/benchmarks")
        available = set(registry.offline_names())
        names = [n for n in names if n in available] if names else sorted(available)
    names = names or registry.names()
    specs = resolve_specs(registry, names)
    if args.export:
        return export(registry, names, args)
    records = [{k: v for k, v in dataclasses.asdict(s).items() if k != "description"} |
               {"description": s.description} for s in specs]
    cols = ["name", "lm_eval_task", "output_type", "primary_metric", "chance", "version", "source"]
    emit_records(records, columns=None if args.json else cols, as_json=args.json)
    return 0


def export(registry, names, args) -> int:
    """``--export DIR``: one plain lm-eval YAML per task (and its data), a line per file."""
    from ..engine.patches import cache_compiled_templates
    from ..tasks import DataError, TaskError

    cache_compiled_templates()  # each record is rendered once to check it: compile templates once
    records = []
    for name in names:
        try:
            path = registry.export_lm_eval_yaml(name, args.export, task_name=args.prefix + name,
                                                max_items=args.max_items)
        except (TaskError, DataError) as e:
            raise CliError(f"cannot export {name}: {e}") from e
        records.append({"task": name, "lm_eval_task": args.prefix + name, "yaml": str(path)})
    emit_records(records, as_json=args.json)
    if not args.json:
        print(f"run them with stock lm-eval: lm_eval --include_path {args.export} --tasks "
              f"{','.join(r['lm_eval_task'] for r in records)} --model hf --model_args "
              "pretrained=<model>")
    return 0
