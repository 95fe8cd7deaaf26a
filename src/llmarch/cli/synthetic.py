"""`llmarch synthetic`: a model trained on a synthetic long-range task, and its answer accuracy."""
from __future__ import annotations

import json

from ..errors import LlmarchError
from .options import add_fields, collect, model_config, model_overrides


def add_parsers(sub) -> None:
    from ..data.synthetic import TASKS, SyntheticTask
    from ..train.synthetic import SyntheticConfig

    p = sub.add_parser("synthetic", help="train a model on a synthetic long-range task (associative recall, "
                                         "selective copying) and report its answer accuracy")
    p.add_argument("task", choices=TASKS, help="recall: associative recall; copy: selective copying")
    p.add_argument("--model", default="gpt-tiny", help="preset name or .json/.yaml config (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: %(default)s)")
    add_fields(p.add_argument_group("task (--task-...): recall reads pairs, keys, values; copy reads length, "
                                    "data-tokens, data-vocab"), SyntheticTask, prefix="task_", skip=("name",),
               keep_defaults=False, unset="")
    add_fields(p.add_argument_group("training"), SyntheticConfig)
    model_overrides(p)
    p.set_defaults(func=cmd_synthetic)


def cmd_synthetic(args) -> None:
    from ..data.synthetic import TASK_FIELDS, SyntheticTask
    from ..train.synthetic import SyntheticConfig, train_synthetic

    given = collect(args, SyntheticTask, "task_", only_set=True)
    for name in given:
        if name not in TASK_FIELDS[args.task]:
            raise LlmarchError(f"--task-{name.replace('_', '-')} is not an option of {args.task} (it reads "
                               f"{', '.join('--task-' + n.replace('_', '-') for n in TASK_FIELDS[args.task])})")
    task = SyntheticTask(name=args.task, **given)
    result = train_synthetic(model_config(args), task, SyntheticConfig(**collect(args, SyntheticConfig)))
    if args.json:
        print(json.dumps(result))
    else:
        mixer = result["mixer"] if result["mixer"] != "attention" else f"attention {result['attention']}"
        print(f"{result['task']}: {result['model']} ({mixer}), {result['steps']} steps: "
              f"answer accuracy {result['accuracy']:.3f}, final training loss {result['final_train_loss']:.4f}")
