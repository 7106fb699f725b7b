"""Refile tests by the module they test: move top-level test functions/classes between files by AST, each with the
helpers (functions, classes, constants, fixtures) it uses and the imports those need. A one-off tool for issue 32,
not part of the suite (pytest collects only test_*.py).

    python tests/refile.py            # dry run: what would move where, conflicts, unmapped tests
    python tests/refile.py --write    # do it (git mv for whole-file renames; rewrites and creates files)

The mapping: RENAME moves a whole file; MOVES[source][test] names a test's target ("*" is the default for a
source's other tests). A helper used by tests going to several targets is copied to each, and reported: move it to
conftest.py instead. A name that exists in a target with other source is renamed (``name_<source>``), and reported.
"""
from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# ------------------------------------------------------------------------------------------------------- mapping
# whole files named by a module already, but without its package (tests/test_<package>_<module>.py)
RENAME = {
    "test_core.py": "test_layering.py",            # it tests the import layering, not ftkit.core
    "test_ner.py": "test_nlp_ner.py",
    "test_classify.py": "test_nlp_classify.py",
    "test_lm.py": "test_nlp_lm.py",
    "test_sft.py": "test_nlp_sft.py",
    "test_ner_scores.py": "test_nlp_ner_scores.py",
    "test_baselines.py": "test_nlp_baselines.py",
    "test_recipe.py": "test_nlp_recipe.py",
    "test_cifar.py": "test_data_cifar10.py",
    "test_conll.py": "test_data_conll.py",
    "test_text.py": "test_data_text.py",
    "test_corpus.py": "test_data_corpus.py",
    "test_landscape.py": "test_optviz_landscape.py",
    "test_hessian.py": "test_optviz_hessian.py",
    "test_surfaces.py": "test_optviz_surfaces.py",
    "test_gd_engine.py": "test_optviz_gd_engine.py",
    "test_replay.py": "test_train_replay.py",
    "test_distributed.py": "test_train_distributed.py",
    "test_lr_find.py": "test_train_lr_finder.py",
    "test_loop.py": "test_train_loop.py",
    "test_notebook_setup.py": "test_notebook.py",
    "test_figures.py": "test_plots_style.py",
    "test_plots_training.py": "test_plots_training.py",
    "test_playground.py": "test_ui_playground.py",
    "test_vision.py": "test_vision.py",
    "test_checkpoint.py": "test_train_checkpoint.py",
    "test_loggers.py": "test_train_loggers.py",
}

LOOP, RESUME, CKPT, CALLBACKS, LOGGERS = ("test_train_loop.py", "test_train_resume.py", "test_train_checkpoint.py",
                                          "test_train_callbacks.py", "test_train_loggers.py")
STEP, METRICS, DASH, RUN, LIVE = ("test_train_step.py", "test_metrics.py", "test_ui_dashboard.py", "test_ui_run.py",
                                  "test_ui_live.py")

# source file (after RENAME) → {test name: target}; "*": every other test of that source
MOVES: dict[str, dict[str, str]] = {
    "test_errors.py": {
        "test_param_group_typo_names_the_closest_option": "test_optim.py",
        "test_param_group_values_are_range_checked_and_params_required": "test_optim.py",
        "test_betas_must_be_a_pair": "test_optim.py",
        "test_param_control_checks_each_option_range": CALLBACKS,
        "test_early_stopping_patience_and_min_delta": CALLBACKS,
        "test_seed_everything_refuses_what_is_not_a_whole_number": "test_utils.py",
        "test_history_from_json_names_a_bad_file": "test_core.py",
        "test_top_k_skips_ignored_labels_like_accuracy": METRICS,
        "test_predict_batch_size_and_numpy_input": STEP,
        "test_batchnorm_with_a_one_sample_batch_says_what_to_change": LOOP,
        "test_a_crafted_batch_never_runs_code": "test_data_cifar10.py",
        "test_real_format_batches_still_load": "test_data_cifar10.py",
        "test_cifar_meta_and_folder_problems_are_named": "test_data_cifar10.py",
        "test_cifar_or_synthetic_falls_back_only_without_cifar": "test_data_cifar10.py",
        "test_notebook_01_calls_the_loader_that_keeps_a_partial_folders_error": "test_data_cifar10.py",
        "test_landscape_span_and_chunk_size": "test_optviz_landscape.py",
        "test_landscape_non_finite_points_are_said": "test_optviz_landscape.py",
        "test_gd_explorer_refuses_what_its_sliders_would_clamp": "test_ui_gd_explorer.py",
        "test_generate_checks_the_prompt": "test_nlp_lm.py",
        "test_labels_in_another_order_are_mapped_by_name": "test_nlp_classify.py",
        "test_a_head_that_names_its_labels_refuses_another_order": "test_nlp_classify.py",
        "test_predict_texts_are_checked": "test_nlp_classify.py",
        "test_model_folders_are_named": "test_nlp_classify.py",
        "test_ner_head_that_names_its_labels_refuses_another_order": "test_nlp_ner.py",
        "test_ner_max_length_empty_split_and_none_text": "test_nlp_ner.py",
        "test_save_onto_a_file_fails_before_writing": "test_nlp_hf.py",
        "test_neighbours_zero_sizes_seeds_and_replayed_values": "test_nlp_classify.py",
    },
    "test_reliability.py": {
        "*": RESUME,
        "test_model_checkpoint_min_mode_keeps_the_lowest": CALLBACKS,
        "test_monitor_and_mode_are_checked_before_the_first_epoch": CALLBACKS,
        "test_optimizer_built_for_another_model_is_refused": LOOP,
        "test_accuracy_with_one_hot_soft_and_single_logit_targets": METRICS,
        "test_a_three_element_batch_is_refused_not_trained_on_the_mask": STEP,
        "test_wrong_types_name_the_parameter": LOOP,
        "test_metrics_and_callbacks_may_be_given_alone": LOOP,
        "test_a_nan_gradient_with_a_finite_loss_stops_before_the_update": STEP,
        "test_a_batch_of_only_ignored_labels_neither_poisons_evaluate_nor_stops_fit": STEP,
        "test_predict_on_a_list_of_samples_history_typos_and_frames": STEP,
        "test_manual_changes_are_events_in_the_history": CALLBACKS,
        "test_bad_checkpoint_files_get_one_clear_error_each": CKPT,
        "test_a_checkpoint_of_another_model_or_optimizer_is_refused_before_any_weight_changes": CKPT,
        "test_orphaned_temp_files_of_a_killed_save_are_cleaned_at_the_next_save": CKPT,
        "test_model_returning_a_tuple_says_how_to_pick_the_logits": STEP,
        "test_cifar_folder_with_a_missing_batch_names_it": "test_data_cifar10.py",
        "test_max_steps_ends_training_after_that_many_steps_and_closes_the_epoch": LOOP,
        "test_fit_draws_no_random_numbers_of_its_own_so_it_equals_a_plain_loop": LOOP,
        "test_conll_bom_bad_bytes_and_empty_files_are_named": "test_data_conll.py",
        "test_tagger_takes_one_string_as_one_text": "test_nlp_ner.py",
        "test_a_manual_lr_keeps_each_param_groups_ratio": CALLBACKS,
    },
    "test_resume.py": {
        "*": RESUME,
        "test_a_crafted_checkpoint_runs_nothing_and_the_error_says_why": CKPT,
        "test_a_read_only_output_folder_fails_at_fit_start_before_any_training": LOOP,
        "test_csv_logger_keeps_the_validation_columns_a_resume_adds": LOGGERS,
        "test_csv_logger_resumed_from_an_earlier_checkpoint_replaces_the_later_rows": LOGGERS,
        "test_early_stopping_restores_the_best_only_when_it_stopped_the_run_not_on_ctrl_c": CALLBACKS,
    },
    "test_train.py": {
        "*": LOOP,
        "test_history_round_trips_through_json_csv_and_frame": "test_core.py",
        "test_resume_from_checkpoint_matches_a_straight_run": RESUME,
        "test_checkpoint_survives_a_kill_during_the_write": CKPT,
        "test_early_stopping_stops_on_patience_and_restores_best": CALLBACKS,
        "test_param_control_sets_lr_at_next_step_and_overrides_the_scheduler": CALLBACKS,
        "test_loggers_write_tensorboard_events_csv_and_lr_columns": LOGGERS,
        "test_live_plot_without_a_frontend_draws_one_static_figure_at_the_end": LIVE,
        "test_metrics_accuracy_and_top_k_against_hand_counts": METRICS,
        "test_accuracy_reads_classes_from_the_right_axis_for_sequences_and_images": METRICS,
        "test_dict_batches_use_the_models_own_loss": STEP,
        "test_amp_on_cpu_runs_in_bfloat16": STEP,
        "test_train_module_imports_no_widgets_or_plotly": "test_layering.py",
    },
    "test_loop_path.py": {
        "*": LOOP,
        "test_a_hook_set_on_an_instance_fires": "test_core.py",
        "test_an_instance_hook_wins_over_the_class_method_and_a_non_callable_one_is_refused": "test_core.py",
        "test_local_and_distributed_have_the_same_methods_and_the_loop_has_no_dist_branch": "test_train_strategy.py",
        "test_writers_run_on_the_main_process_only": "test_train_strategy.py",
        "test_a_mapping_batch_that_is_not_a_dict_trains_like_a_dict": STEP,
    },
    "test_lr_find_suggestion.py": {"*": "test_train_lr_finder.py"},
    "test_widgets.py": {
        "*": DASH,
        "test_fit_live_async_serves_the_controls_and_returns_the_history": RUN,
        "test_sync_fit_live_on_ipykernel_7_warns_and_still_trains": RUN,
        "test_papermill_kernel_without_frontend_trains_to_the_end": RUN,
        "test_live_plot_draws_loss_and_every_fit_metric": LIVE,
        "test_figure_marks_events_on_loss_and_lr_panels_with_smoothing_and_log_toggle": "test_plots_training.py",
        "test_compare_runs_overlays_runs_with_their_parameters_in_the_legend": "test_plots_training.py",
        "test_probe_line_and_a_bad_dashboard_choice": LIVE,
    },
    "test_optim_registry.py": {"*": "test_optim.py"},
    "test_plots_training.py": {
        "test_lr_slider_spans_four_decades_around_the_lr_and_the_box_sets_an_exact_value": DASH,
    },
}

# first lines of the files this creates
DOCS = {
    "test_core.py": "ftkit.core: the training vocabulary (History, Callback and its hooks).",
    "test_metrics.py": "ftkit.metrics: accuracy, top-k and the tracker against hand counts, ignored labels, bad targets.",
    "test_train_loop.py": "ftkit.train.loop: fit — what it checks before training, what it records, how it ends.",
    "test_train_step.py": "ftkit.train.step: one training step, evaluate and predict — batches, AMP, non-finite values.",
    "test_train_resume.py": "ftkit.train.resume: a stopped run resumed equals an uninterrupted one; changed settings on "
                            "resume are honoured or refused.",
    "test_train_checkpoint.py": "ftkit.train.checkpoint: safe writes, plain data, one clear error per bad file.",
    "test_train_callbacks.py": "ftkit.train.callbacks: EarlyStopping, ModelCheckpoint, ParamControl — their options "
                               "and their state across a resume.",
    "test_train_loggers.py": "ftkit.train.loggers: CSV and TensorBoard logs, and what a resume does to them.",
    "test_train_strategy.py": "ftkit.train.strategy: one loop path for 1 or N processes; only the main process writes.",
    "test_ui_dashboard.py": "ftkit.ui.dashboard: the training dashboard's controls (LR slider, Pause, Stop, LR finder) "
                            "driven from Python.",
    "test_ui_gd_explorer.py": "ftkit.ui.gd_explorer: the gradient-descent explorer widget.",
    "test_nlp_hf.py": "ftkit.nlp.hf: loading and saving Hugging Face model folders.",
    # existing files whose subject grows
    "test_train_loop.py": "ftkit.train.loop: fit — what it checks before training, what it records (numbers as "
                          "Python floats, whole-split torchmetrics values, the history), how it ends.",
    "test_plots_training.py": "ftkit.plots.training: the training figure's legibility (event labels off the loss "
                              "curve, the LR axis, whole-epoch ticks, one-epoch metrics, no empty panel), event "
                              "markers, smoothing and the runs-compared figure.",
}


# --------------------------------------------------------------------------------------------------- machinery
class Block:
    """One top-level statement of a file, with its source text (leading comments included)."""

    def __init__(self, node: ast.stmt, text: str, source: str):
        self.node, self.text, self.source = node, text, source
        self.defines = defined_names(node)
        self.uses = used_names(node)
        self.reads = used_names(node, strings=False)
        self.is_test = (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")) \
            or (isinstance(node, ast.ClassDef) and node.name.startswith("Test"))
        self.is_import = isinstance(node, ast.Import | ast.ImportFrom)
        self.name = getattr(node, "name", None)
        self.autouse = any(isinstance(d, ast.Call) and any(k.arg == "autouse" for k in d.keywords)
                           for d in getattr(node, "decorator_list", []))


def defined_names(node) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    out = set()
    for target in getattr(node, "targets", []) + ([node.target] if isinstance(node, ast.AnnAssign) else []):
        out |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return out


def used_names(node, strings: bool = True) -> set[str]:
    """Names read anywhere in the statement, fixture names (arguments of a function) and (``strings``) strings that
    may name a fixture or helper (``usefixtures("x")``, ``getfixturevalue("x")``, indirect parametrization)."""
    out = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)}
    if strings:
        out |= {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and n.value.isidentifier()}
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        out |= {a.arg for a in node.args.args + node.args.kwonlyargs}
    return out


def read_blocks(path: Path) -> tuple[str | None, list[Block]]:
    return read_blocks_text(path.read_text(), path.name)


def read_blocks_text(text: str, name: str) -> tuple[str | None, list[Block]]:
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    body = list(tree.body)
    doc = None
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        doc = "".join(lines[: body[0].end_lineno])
        prev_end = body[0].end_lineno
        body = body[1:]
    else:
        prev_end = 0
    blocks = []
    for node in body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        gap = lines[prev_end:start - 1]
        comments = []
        for ln in reversed(gap):                     # the comment lines right above (section headers)
            if ln.strip().startswith("#"):
                comments.insert(0, ln)
            elif ln.strip() == "" and comments:
                break
            elif ln.strip() == "":
                continue
            else:
                break
        blocks.append(Block(node, "".join(comments + lines[start - 1: node.end_lineno]), name))
        prev_end = node.end_lineno
    return doc, blocks


def closure(roots: list[Block], blocks: list[Block]) -> list[Block]:
    """The non-import blocks the roots need, transitively, in file order."""
    by_name = {}
    for b in blocks:
        if not b.is_import and not b.is_test:
            for n in b.defines:
                by_name.setdefault(n, []).append(b)
    need, todo = set(), list(roots)
    while todo:
        b = todo.pop()
        for n in b.uses:
            for h in by_name.get(n, []):
                if id(h) not in need and h not in roots:
                    need.add(id(h))
                    todo.append(h)
    # side-effect statements (no name defined) and autouse fixtures go with every test of their file
    for b in blocks:
        if not b.is_import and not b.is_test and (not b.defines or b.autouse) and b.defines != {"pytestmark"}:
            if id(b) not in need:
                need.add(id(b))
                for n in b.uses:
                    for h in by_name.get(n, []):
                        need.add(id(h))
    return [b for b in blocks if id(b) in need]


def import_lines(blocks: list[Block], names: set[str]) -> list[str]:
    """Import statements (one name each) for ``names`` as the source file imports them."""
    out = []
    for b in blocks:
        if not b.is_import:
            continue
        node = b.node
        for a in node.names:
            bound = (a.asname or a.name).split(".")[0]
            if bound not in names:
                continue
            if isinstance(node, ast.Import):
                out.append(f"import {a.name}" + (f" as {a.asname}" if a.asname else ""))
            else:
                mod = "." * node.level + (node.module or "")
                if mod == "__future__":
                    continue
                out.append(f"from {mod} import {a.name}" + (f" as {a.asname}" if a.asname else ""))
    return out


def imported_as(node) -> dict[str, str]:
    """bound name → what it is ('module' or 'module:name')."""
    if isinstance(node, ast.Import):
        return {(a.asname or a.name).split(".")[0]: (a.name if a.asname else a.name.split(".")[0]) for a in node.names}
    mod = "." * node.level + (node.module or "")
    return {(a.asname or a.name): f"{mod}:{a.name}" for a in node.names}


def same_object(a: str | None, b: str) -> bool:
    """Whether two imports ('module' or 'module:name') bind the same object (a re-export counts as the same)."""
    if a == b:
        return True
    if a is None:
        return False
    import importlib
    sys.path.insert(0, str(TESTS))
    try:
        objs = []
        for spec in (a, b):
            mod, _, name = spec.partition(":")
            m = importlib.import_module(mod)
            objs.append(getattr(m, name) if name else m)
        return objs[0] is objs[1]
    except Exception:
        return False
    finally:
        sys.path.remove(str(TESTS))


def with_doc(text: str, doc: str) -> str:
    """``text`` with its module docstring (added or replaced) ``doc``, wrapped at 116 columns."""
    import textwrap
    wrapped = textwrap.fill(doc, 116)
    block = f'"""{wrapped}"""\n'
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    if tree.body and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant) \
            and isinstance(tree.body[0].value.value, str):
        lines[tree.body[0].lineno - 1: tree.body[0].end_lineno] = [block]
    else:
        lines.insert(0, block)
    return "".join(lines)


def import_group(module: str) -> int:
    top = module.lstrip(".").split(".")[0]
    if top == "__future__":
        return 0
    if top in sys.stdlib_module_names:
        return 1
    if top == "ftkit":
        return 3
    if top == "conftest" or top.startswith("test_"):
        return 4
    return 2


def render_from(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= 120:
        return line + "\n"
    out, cur = [], f"from {module} import ("
    for i, n in enumerate(names):
        piece = n + (", " if i < len(names) - 1 else ")")
        if len(cur) + len(piece.rstrip()) > 120:
            out.append(cur.rstrip() + "\n")
            cur = " " * len(f"from {module} import (")
        cur += piece
    return "".join(out) + cur + "\n"


def add_imports(text: str, imports: list[str]) -> str:
    """Add ``imports`` (one name each) to ``text``: names join an existing ``from m import`` line of the same module;
    other lines join the block of imports, which is grouped (future, stdlib, third party, ftkit, conftest) when the
    file has none of its own yet beyond ``from __future__``."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    plain, froms = [], defaultdict(list)
    for line in imports:
        node = ast.parse(line).body[0]
        if isinstance(node, ast.Import):
            plain.append(line)
        else:
            froms["." * node.level + (node.module or "")].append(ast.unparse(node).split(" import ", 1)[1])
    body = tree.body[1:] if tree.body and isinstance(tree.body[0], ast.Expr) else tree.body
    head = []
    for n in body:
        if not isinstance(n, ast.Import | ast.ImportFrom):
            break
        head.append(n)
    region = lines[head[0].lineno - 1: head[-1].end_lineno] if head else []
    if head and not any("#" in ln for ln in region):                  # regroup the whole head block
        for n in head:
            for a in n.names:
                piece = a.name + (f" as {a.asname}" if a.asname else "")
                if isinstance(n, ast.Import):
                    line = f"import {piece}"
                    if line not in plain:
                        plain.append(line)
                else:
                    mod = "." * n.level + (n.module or "")
                    if piece not in froms[mod]:
                        froms[mod].append(piece)
        entries = [(import_group(l.split()[1]), 0, l.split()[1], l + "\n") for l in plain] + \
                  [(import_group(m), 1, m, render_from(m, sorted(set(ns), key=lambda x: (x.lower(), x))))
                   for m, ns in froms.items()]
        block, prev = [], None
        for group, kind, mod, line in sorted(entries, key=lambda t: (t[0], t[1], t[2].lower())):
            if prev is not None and group != prev:
                block.append("\n")
            block.append(line)
            prev = group
        lines[head[0].lineno - 1: head[-1].end_lineno] = block
        return "".join(lines).rstrip("\n") + "\n"
    existing = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    for node in sorted(existing, key=lambda n: -n.lineno):           # merge into lines of the same module
        if isinstance(node, ast.ImportFrom):
            mod = "." * node.level + (node.module or "")
            if mod in froms and mod != "__future__":
                names = [a.name + (f" as {a.asname}" if a.asname else "") for a in node.names]
                names += [n for n in froms.pop(mod) if n not in names]
                lines[node.lineno - 1: node.end_lineno] = [render_from(mod, names)]
    new = [(import_group(l.split()[1]), 0, l + "\n") for l in plain] + \
          [(import_group(m), 1, render_from(m, names)) for m, names in froms.items()]
    if not new:
        return "".join(lines).rstrip("\n") + "\n"
    only_future = all(isinstance(n, ast.ImportFrom) and n.module == "__future__" for n in existing)
    tree = ast.parse("".join(lines))
    last = max([n.end_lineno for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)] or
               [tree.body[0].end_lineno if tree.body else 0])
    if only_future:
        block, prev = [], None
        for group, kind, line in sorted(new, key=lambda t: (t[0], t[1], t[2])):
            if prev is not None and group != prev:
                block.append("\n")
            block.append(line)
            prev = group
        lines[last:last] = ["\n"] + block
    else:
        lines[last:last] = [line for _, _, line in sorted(new, key=lambda t: (t[0], t[1], t[2]))]
    return "".join(lines).rstrip("\n") + "\n"


def rename_in(text: str, old: str, new: str) -> str:
    """Rename the identifier ``old`` in ``text`` (not attributes ``x.old`` nor keyword arguments ``old=``)."""
    toks = list(tokenize.generate_tokens(io.StringIO(text).readline))
    out = []
    for i, t in enumerate(toks):
        if t.type == tokenize.NAME and t.string == old:
            prev = toks[i - 1].string if i else ""
            nxt = toks[i + 1].string if i + 1 < len(toks) else ""
            if prev != "." and not (nxt == "=" and prev in ("(", ",")):
                t = t._replace(string=new)
        out.append(t)
    return tokenize.untokenize(out) if out else text


def marks_of(blocks: list[Block]) -> list[str]:
    for b in blocks:
        if b.defines == {"pytestmark"}:
            value = b.node.value
            items = value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
            return [ast.unparse(v) for v in items]
    return []


def with_marks(text: str, marks: list[str]) -> str:
    if not marks:
        return text
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        i += 1
    return "".join(lines[:i] + [f"@{m}\n" for m in marks] + lines[i:])


def plan(write: bool) -> int:
    problems, notes = [], []
    # 1. whole-file renames
    for old, new in RENAME.items():
        if old == new or not (TESTS / old).exists():
            continue
        if (TESTS / new).exists():
            problems.append(f"rename {old} → {new}: {new} exists")
            continue
        notes.append(f"rename {old} → {new}")
        if write:
            subprocess.run(["git", "mv", str(TESTS / old), str(TESTS / new)], check=True, cwd=TESTS)
    exists = lambda name: (TESTS / name).exists() or (not write and name in RENAME.values() and any(  # noqa: E731
        (TESTS / o).exists() for o, n in RENAME.items() if n == name))
    path_of = lambda name: TESTS / name if (TESTS / name).exists() else TESTS / next(  # noqa: E731
        o for o, n in RENAME.items() if n == name)

    # 2. which test goes where
    outgoing: dict[str, dict[str, list[Block]]] = defaultdict(lambda: defaultdict(list))
    sources = {}
    for src, table in MOVES.items():
        if not exists(src):
            problems.append(f"{src}: no such file")
            continue
        doc, blocks = read_blocks(path_of(src))
        sources[src] = (doc, blocks)
        tests = [b for b in blocks if b.is_test]
        for name in set(table) - {"*"} - {b.name for b in tests}:
            problems.append(f"{src}: mapping names {name}, which the file does not have")
        for b in tests:
            target = table.get(b.name, table.get("*"))
            if target is None:
                continue                              # stays
            if target == src:
                continue
            outgoing[target][src].append(b)
        unmapped = [b.name for b in tests if b.name not in table and "*" not in table]
        if unmapped and any(v != src for v in table.values()):
            notes.append(f"{src}: stays: {', '.join(unmapped)}")

    # helpers copied to several targets
    copies = defaultdict(set)
    for target, by_src in outgoing.items():
        for src, moved in by_src.items():
            for h in closure(moved, sources[src][1]):
                copies[(src, h.name or h.text.strip()[:40])].add(target)
    remaining_users = {}
    for src, (doc, blocks) in sources.items():
        moved_ids = {id(b) for t in outgoing.values() for b in t.get(src, [])}
        staying = [b for b in blocks if b.is_test and id(b) not in moved_ids]
        remaining_users[src] = staying
        for (s, name), targets in copies.items():
            if s != src:
                continue
            kept = name in {h.name for h in closure(staying, blocks)} if staying else False
            if len(targets) + kept > 1:
                notes.append(f"helper {src}:{name} goes to {sorted(targets)}" + (" and stays" if kept else "")
                             + ": consider conftest.py")

    # 4. the sources lose what moved (and helpers/imports only the moved tests used)
    removed = {}
    for src, (doc, blocks) in sources.items():
        moved_ids = {id(b) for t in outgoing.values() for b in t.get(src, [])}
        if not moved_ids:
            continue
        staying = remaining_users[src]
        if not staying:
            removed[src] = None
            continue
        keep_helpers = {id(h) for h in closure(staying, blocks)}
        needed = set().union(*(b.uses for b in blocks if id(b) in keep_helpers or (b.is_test and id(b) not in moved_ids)))
        needed |= set().union(*(b.uses for b in blocks if b.defines == {"pytestmark"}))
        reads = set().union(*(b.reads for b in blocks if id(b) in keep_helpers or b.defines == {"pytestmark"}
                              or (b.is_test and id(b) not in moved_ids)
                              or (not b.is_test and not b.is_import and (not b.defines or b.autouse))))
        parts = [doc] if doc else []
        for b in blocks:
            if b.is_test:
                if id(b) in moved_ids:
                    continue
            elif b.is_import:
                names = [a for a in b.node.names if (a.asname or a.name).split(".")[0] in reads
                         or getattr(b.node, "module", None) == "__future__"]
                if not names:
                    continue
                if len(names) != len(b.node.names):
                    b = Block(type(b.node)(**{**b.node.__dict__, "names": names}), "", src)
                    b.text = ast.unparse(b.node) + "\n"
            elif b.defines != {"pytestmark"} and id(b) not in keep_helpers and b.defines and not b.autouse:
                used_elsewhere = b.defines & needed
                if not used_elsewhere:
                    continue
            parts.append(b.text)
        text = ""
        for i, p in enumerate(parts):
            prev_import = i and parts[i - 1].lstrip().startswith(("import ", "from "))
            this_import = p.lstrip().startswith(("import ", "from "))
            sep = "" if i == 0 else ("" if prev_import and this_import else "\n\n" if not this_import or not prev_import else "")
            text += sep + p.rstrip("\n") + "\n"
        removed[src] = text

    # 3. build each target's new text
    new_texts = {}
    for target, by_src in sorted(outgoing.items()):
        if target in removed and removed[target] is not None:
            text = removed[target]
            tdoc, tblocks = read_blocks_text(text, target)
        elif exists(target) and target not in removed:
            tdoc, tblocks = read_blocks(path_of(target))
            text = path_of(target).read_text()
        else:
            tdoc, tblocks = None, []
            first = DOCS.get(target)
            if first is None:
                problems.append(f"{target}: new file without a line in DOCS")
                first = f"Tests of ftkit.{target[5:-3].replace('_', '.')}."
            text = with_doc('from __future__ import annotations\n', first)
        if marks_of(tblocks):
            notes.append(f"{target}: its pytestmark {marks_of(tblocks)} now applies to the tests it gets too")
        have = {}
        for b in tblocks:
            for n in b.defines:
                have[n] = b
        imports, body = [], []
        for src, moved in by_src.items():
            blocks = sources[src][1]
            helpers = closure(moved, blocks)
            marks = marks_of(blocks)
            renames = {}
            chunk = []
            for b in helpers + moved:
                clash = [n for n in b.defines if n in have]
                if clash and all(ast.dump(have[n].node) == ast.dump(b.node) for n in clash):
                    continue                          # the same helper is there already
                for n in clash:
                    new = f"{n}_{Path(src).stem.removeprefix('test_')}" if not b.is_test else f"{n}_from_{Path(src).stem.removeprefix('test_')}"
                    renames[n] = new
                    notes.append(f"{target}: {src}'s {n} clashes with the target's: renamed {new}")
                chunk.append(with_marks(b.text, marks) if b.is_test else b.text)
                for n in b.defines:
                    have.setdefault(n, b)
            joined = "\n\n".join(c.rstrip("\n") + "\n" for c in chunk)
            for old, new in renames.items():
                joined = rename_in(joined, old, new)
            body.append(joined)
            need = set().union(*(b.reads for b in helpers + moved))
            for line in import_lines(blocks, need):
                node = ast.parse(line).body[0]
                [bound] = defined_names(node)
                other = have.get(bound)
                if other is not None and other.is_import:
                    if not same_object(imported_as(other.node).get(bound), imported_as(node)[bound]):
                        problems.append(f"{target}: {bound} imported differently ({line} / {ast.unparse(other.node)})")
                    continue
                if other is not None:
                    problems.append(f"{target}: {bound} is both an import from {src} and a name there")
                    continue
                imports.append(line)
                have[bound] = Block(node, line, target)
        text = add_imports(text, imports)
        if target in DOCS:
            text = with_doc(text, DOCS[target])
        for chunk in body:
            text += "\n\n" + chunk
        new_texts[target] = text
        notes.append(f"{target}: gets " + "; ".join(f"{len(m)} from {s}" for s, m in by_src.items()))

    # cross-file imports of moved helpers (from test_x import name)
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "") + ".py" in removed:
                notes.append(f"{path.name} imports {[a.name for a in node.names]} from {node.module}: check it")

    for n in notes:
        print("·", n)
    for p in problems:
        print("PROBLEM:", p)
    if write and not problems:
        for src, text in removed.items():
            if src in new_texts:
                continue
            if text is None:
                subprocess.run(["git", "rm", "-q", "-f", str(path_of(src))], check=True, cwd=TESTS)
            else:
                path_of(src).write_text(text)
        for target, text in new_texts.items():
            (path_of(target) if exists(target) else TESTS / target).write_text(text)
        fix_cross_imports()
        rewrite_references(new_texts, removed)
        subprocess.run(["git", "add", "-A", str(TESTS)], check=True, cwd=TESTS)
    return 1 if problems else 0


def rewrite_references(new_texts, removed):
    """``tests/test_old.py`` named in docs, CI scripts, the package and notebooks: the file's new name (renamed
    files only; a split file's mentions are reported)."""
    repo = TESTS.parent
    for path in [repo / "README.md", *repo.glob("docs/**/*.md"), *repo.glob(".ci/*"), *repo.glob("ftkit/**/*.py"),
                 *repo.glob("notebooks/*.ipynb"), *repo.glob("benchmarks/*.py")]:
        if not path.is_file():
            continue
        text = path.read_text()
        new = text
        for old, target in RENAME.items():
            new = new.replace(f"tests/{old}", f"tests/{target}")
        for src in removed:
            if f"tests/{src}" in new:
                print(f"PROBLEM: {path.relative_to(repo)} names tests/{src}, which was split: name its new file")
        if new != text:
            path.write_text(new)
            print(f"· {path.relative_to(repo)}: test file names updated")


def fix_cross_imports():
    """``from test_x import name`` in any test file: point it at the file that defines ``name`` now."""
    defined = {}
    for path in TESTS.glob("test_*.py"):
        for node in ast.parse(path.read_text()).body:
            for n in defined_names(node):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    defined.setdefault(n, set()).add(path.stem)
    for path in sorted(TESTS.glob("*.py")):
        text = path.read_text()
        lines = text.splitlines(keepends=True)
        changed = False
        for node in sorted(ast.parse(text).body, key=lambda n: -n.lineno):
            if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("test_")):
                continue
            by_module = defaultdict(list)
            for a in node.names:
                homes = defined.get(a.name, set())
                home = node.module if node.module in homes else (sorted(homes)[0] if len(homes) == 1 else None)
                if home is None:
                    print(f"PROBLEM: {path.name}: {a.name} (from {node.module}) is defined in {sorted(homes)}")
                    home = node.module
                by_module[home].append(a.name + (f" as {a.asname}" if a.asname else ""))
            new = "".join(f"from {m} import {', '.join(names)}\n" for m, names in by_module.items())
            old = "".join(lines[node.lineno - 1: node.end_lineno])
            if new != old:
                lines[node.lineno - 1: node.end_lineno] = [new]
                changed = True
                print(f"· {path.name}: {old.strip()} → {new.strip()}")
        if changed:
            path.write_text("".join(lines))


if __name__ == "__main__":
    sys.exit(plan("--write" in sys.argv))
