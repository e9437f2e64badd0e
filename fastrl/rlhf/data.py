"""User data for RLHF: prompts and preference records, turned into padded token tensors. Every
error names the record at fault.

Prompts (:func:`prompt_source`): a list of strings, of 1-D token tensors, of conversations (lists
of ``{"role", "content"}`` messages, rendered through a ``transformers`` tokenizer's chat template
with the assistant's turn opened), or of dicts with a ``"prompt"`` (either kind) whose other keys
are columns that reward functions receive as keyword arguments (TRL's convention); or a
``datasets.Dataset`` with a ``"prompt"`` column (the others likewise). Preference pairs
(:func:`preference_pairs`): :class:`Preference` objects, dicts or a ``datasets.Dataset`` with
prompt, chosen and rejected (or prompt and ranking), in text or as conversations; or JSONL:

one record per line, either a pair
    {"prompt": "...", "chosen": "...", "rejected": "...", "margin": 0.0}      (margin optional)
or a ranking of K responses, best first, which gives the K(K-1)/2 pairs it implies
    {"prompt": "...", "ranking": ["best", "second", ..., "worst"]}
The file is UTF-8 (a leading byte-order mark is accepted); the prompt must not be empty (responses
may be); a margin is a finite number; other fields are ignored, but may not hold NaN, Infinity or
numbers beyond float range either. Anything else is a ValueError naming the file, line and field.
"""

from __future__ import annotations

import codecs
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastrl.rlhf.tokenizer import Tokenizer

__all__ = [
    "Preference",
    "PairBatch",
    "PromptSource",
    "prompt_source",
    "preference_pairs",
    "load_preferences",
    "ranking_to_pairs",
    "encode_prompts",
    "encode_pairs",
    "pad",
]


@dataclass
class Preference:
    """One comparison: ``chosen`` was preferred to ``rejected`` as a response to ``prompt``.
    Checked at construction: strings (the prompt not empty), a finite margin."""

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    """How much better chosen is; the Bradley-Terry loss asks r_c - r_r to exceed it."""
    source: str = ""
    """Where the record came from (e.g. ``prefs.jsonl:12``), for error messages."""

    def __post_init__(self):
        where = self.source or "preference"
        for name in ("prompt", "chosen", "rejected"):
            _check_text(getattr(self, name), name, where)
        self.margin = _check_margin(self.margin, where)


@dataclass
class PairBatch:
    """Chosen and rejected sequences (prompt + response + EOS), right-padded."""

    chosen: torch.Tensor
    """[B, S] token ids."""
    chosen_mask: torch.Tensor
    """[B, S] bool, True for real tokens."""
    rejected: torch.Tensor
    """[B, S'] token ids."""
    rejected_mask: torch.Tensor
    """[B, S'] bool."""
    margin: torch.Tensor
    """[B] float."""

    def __len__(self) -> int:
        return self.chosen.shape[0]

    def select(self, index: torch.Tensor) -> PairBatch:
        return PairBatch(*(x[index] for x in (self.chosen, self.chosen_mask, self.rejected,
                                               self.rejected_mask, self.margin)))  # fmt: skip


def ranking_to_pairs(prompt: str, ranking: list[str], source: str = "") -> list[Preference]:
    """Every (better, worse) pair of a best-first ranking of K >= 2 responses: K(K-1)/2 pairs."""
    if not isinstance(ranking, (list, tuple)) or len(ranking) < 2:
        raise ValueError(f"{source or 'ranking'}: 'ranking' must be a list of at least 2 responses")
    return [
        Preference(prompt, ranking[i], ranking[j], source=source)
        for i in range(len(ranking))
        for j in range(i + 1, len(ranking))
    ]


# --------------------------------------------------------------------------- preference JSONL


def _json_type(value) -> str:
    """The JSON name of a parsed value, for error messages."""
    if isinstance(value, _NonFinite):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    for kind, name in ((str, "a string"), (dict, "an object"), (list, "an array"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return f"the number {str(value)[:40]}" if isinstance(value, (int, float)) else type(value).__name__


def _check_text(value, field: str, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {field!r} must be a string, got {_json_type(value)}")
    if field == "prompt" and not value:
        raise ValueError(f"{where}: field 'prompt' is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from the JSON escape "\ud800"
        raise ValueError(f"{where}: field {field!r} is not valid Unicode text (an unpaired surrogate "
                         f"{value[exc.start]!r} at character {exc.start})") from None
    return value


_FINITE = "(JSON has no NaN or Infinity, and a number must fit a float: |x| < 1.8e308)"


def _check_margin(value, where: str) -> float:
    if isinstance(value, _NonFinite):
        raise ValueError(f"{where}: field 'margin' must be a finite number, got {value.text} {_FINITE}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: field 'margin' must be a number, got {_json_type(value)}")
    try:
        margin = float(value)
    except OverflowError:  # an integer beyond float range
        margin = math.inf
    if not math.isfinite(margin):
        shown = value if isinstance(value, float) else "an integer too large for a float"
        raise ValueError(f"{where}: field 'margin' must be a finite number, got {shown}")
    return margin


class _NonFinite:
    """What the parser makes of ``NaN``, ``Infinity`` and numbers beyond float range (``1e400``):
    Python's json would accept them as floats; the record check reports them by field."""

    def __init__(self, text: str):
        self.text = text


def _parse_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def _parse_int(text: str):
    # beyond 309 digits no float holds it (and past 4300 digits int() itself refuses)
    digits = len(text.lstrip("-"))
    return int(text) if digits <= 309 else _NonFinite(f"{text[:12]}... (an integer of {digits} digits)")


def _non_finite_field(record: dict) -> tuple[str, str] | None:
    """``(field, text)`` of the first non-finite number anywhere in ``record`` (iterative: the
    parser already accepted its nesting depth)."""
    stack = [(repr(k), v) for k, v in reversed(record.items())]
    while stack:
        name, value = stack.pop()
        if isinstance(value, _NonFinite):
            return name, value.text
        if isinstance(value, dict):
            stack += [(f"{name}[{k!r}]", v) for k, v in reversed(value.items())]
        elif isinstance(value, list):
            stack += [(f"{name}[{i}]", v) for i, v in reversed(list(enumerate(value)))]
    return None


_BLANK = object()  # what _parse_line gives for a blank line (JSON null parses to None)


def _parse_line(raw: bytes, where: str, first: bool):
    """One JSONL line -> the parsed value (``_BLANK`` for a blank line); every failure a ValueError
    naming ``where``."""
    if first and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]  # a UTF-8 byte-order mark, as some editors write
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        other_bom = first and raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE))
        hint = "the file starts with a UTF-16 or UTF-32 byte-order mark" if other_bom else "latin-1 or Windows-1252?"
        raise ValueError(f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the "
                         f"line; {hint} Save the file as UTF-8)") from None
    if line.startswith("\ufeff"):
        raise ValueError(f"{where}: a byte-order mark (U+FEFF) starts the line; only the file's first line "
                         "may have one (were files concatenated?)")
    if not line.strip():
        return _BLANK
    try:
        return json.loads(line, parse_float=_parse_float, parse_int=_parse_int, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # any other refusal of the parser
        raise ValueError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{where}: not valid JSON (nested too deeply)") from None


def _record_pairs(record, where: str, tokenizer=None) -> list[Preference]:
    """The pairs of one parsed JSONL record, checked field by field."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {_json_type(record)}")
    pairs = _known_fields(_pair_record(record, tokenizer, where), where)
    # the known fields are checked: a non-finite number left is in another field
    bad = _non_finite_field(record)
    if bad is not None:
        raise ValueError(f"{where}: field {bad[0]} must be a finite number, got {bad[1]} {_FINITE}")
    return pairs


def _known_fields(record: dict, where: str) -> list[Preference]:
    if "prompt" not in record:
        raise ValueError(f"{where}: missing field 'prompt'")
    prompt = _check_text(record["prompt"], "prompt", where)
    if "ranking" in record:
        extra = [k for k in ("chosen", "rejected", "margin") if k in record]
        if extra:
            raise ValueError(f"{where}: field {extra[0]!r} cannot be combined with 'ranking' (a record is "
                             "either a pair or a ranking)")
        ranking = record["ranking"]
        if not isinstance(ranking, list) or len(ranking) < 2:
            raise ValueError(f"{where}: 'ranking' must be a list of at least 2 strings, got {_json_type(ranking)}"
                             + (f" of {len(ranking)}" if isinstance(ranking, list) else ""))
        for i, response in enumerate(ranking):
            _check_text(response, f"ranking[{i}]", where)
        return ranking_to_pairs(prompt, ranking, where)
    for name in ("chosen", "rejected"):
        if name not in record:
            raise ValueError(f"{where}: missing field {name!r} (a record holds 'chosen' and 'rejected', "
                             "or a 'ranking')")
        _check_text(record[name], name, where)
    margin = _check_margin(record.get("margin", 0.0), where)
    return [Preference(prompt, record["chosen"], record["rejected"], margin, where)]


def load_preferences(path: str | Path, tokenizer: Tokenizer | None = None) -> list[Preference]:
    """Reads preference JSONL (see the module docstring): UTF-8, a leading byte-order mark
    allowed, blank lines skipped, fields other than those above ignored. Any bad line raises a
    ValueError naming the file, the line and the field: invalid UTF-8 or JSON, a line that is not
    an object, a missing field or one of the wrong type, an empty prompt, a non-finite number
    (``NaN``, ``Infinity``, ``1e400``) anywhere in the record. A prompt given as a conversation
    (role/content messages, its responses too) is rendered with ``tokenizer``'s chat template as
    :func:`preference_pairs` does."""
    pairs = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"{path}:{number}"
            record = _parse_line(raw, where, first=number == 1)
            if record is not _BLANK:
                pairs += _record_pairs(record, where, tokenizer)
    if not pairs:
        raise ValueError(f"{path}: no preference records")
    return pairs


# --------------------------------------------------------------------------- prompt and pair sources

# the reward functions' own arguments: a column of these names could not reach them
RESERVED_COLUMNS = ("prompts", "completions")


@dataclass
class PromptSource:
    """Prompts from any source, ready to tokenize: ``prompts`` holds strings (a conversation
    already rendered by the chat template) or 1-D token tensors; ``columns`` the other columns of
    a dataset, one value per prompt, for the reward functions' keyword arguments."""

    prompts: list
    columns: dict[str, list] = field(default_factory=dict)


def _dataset(data, name: str):
    """``data`` if it is a ``datasets.Dataset``, None if it is no ``datasets`` object; the kinds
    that cannot serve raise a TypeError naming ``name``."""
    module = sys.modules.get("datasets")  # not imported: data cannot be one of its objects
    if module is None:
        return None
    if isinstance(data, module.DatasetDict):
        raise TypeError(f"{name} is a DatasetDict (splits: {', '.join(data)}): pass one split, "
                        f"e.g. {name}[{next(iter(data), 'train')!r}]")
    if isinstance(data, module.IterableDataset):
        raise TypeError(f"{name} is an IterableDataset: batches are drawn at random, so pass a datasets.Dataset "
                        "(Dataset.from_list(list(...)))")
    return data if isinstance(data, module.Dataset) else None


def _dataset_rows(dataset, name: str, needed: tuple[str, ...], alternatives: tuple[str, ...] = ()) -> list[dict]:
    """The rows of a ``datasets.Dataset`` as dicts, after checking it has the ``needed`` columns
    (or the ``alternatives``) and a row."""
    columns = dataset.column_names
    missing = [c for c in needed if c not in columns]
    if missing and not (alternatives and all(c in columns for c in alternatives)):
        named = ", ".join(repr(c) for c in missing)
        wanted = " and ".join(needed) + (f" (or {' and '.join(alternatives)})" if alternatives else "")
        raise ValueError(f"{name}: the dataset has no {named} column (its columns: {', '.join(columns) or 'none'}); "
                         f"it needs {wanted}")
    if len(dataset) == 0:
        raise ValueError(f"{name}: the dataset is empty")
    return dataset.to_list()


def is_conversation(value) -> bool:
    """A non-empty list of dicts: chat messages, ``{"role": ..., "content": ...}`` each."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(m, dict) for m in value)


def render_conversation(messages, tokenizer, where: str, add_generation_prompt: bool = True) -> str:
    """The text of a conversation through ``tokenizer``'s chat template (``apply_chat_template``
    of :class:`fastrl.rlhf.tokenizer.HFTokenizer`); a ValueError naming ``where`` when a message
    is malformed or the tokenizer has no template."""
    for j, message in enumerate(messages):
        if not {"role", "content"} <= message.keys():
            raise ValueError(f"{where}: message {j} must have 'role' and 'content' keys, got {sorted(message)}")
    if tokenizer is None or not getattr(tokenizer, "has_chat_template", False):
        what = ("no tokenizer was given" if tokenizer is None else
                f"the {type(tokenizer).__name__} has no chat template" + ("" if hasattr(tokenizer, "hf") else
                                                                           " (only a transformers tokenizer has one)"))
        raise ValueError(f"{where} is a conversation (a list of role/content messages), rendered by the tokenizer's "
                         f"chat template, but {what}: set tokenizer.chat_template to a Jinja string, or pass "
                         "the prompts as text")
    return tokenizer.apply_chat_template(list(messages), add_generation_prompt=add_generation_prompt)


def _prompt_text(value, tokenizer, where: str):
    """A prompt as :func:`encode_prompts` takes it: a string, a conversation rendered, a tensor."""
    if isinstance(value, (str, torch.Tensor)):
        return value
    if is_conversation(value):
        return render_conversation(value, tokenizer, where)
    if isinstance(value, (list, tuple)) and not value:
        raise ValueError(f"{where} is an empty conversation")
    raise TypeError(f"{where}: expected a string, a conversation (a list of role/content dicts) or a 1-D integer "
                    f"tensor, got {type(value).__name__}")


def prompt_source(prompts, tokenizer: Tokenizer | None = None, name: str = "prompts") -> PromptSource:
    """Prompts of any kind the module docstring lists, as a :class:`PromptSource`: conversations
    rendered, records split into prompts and columns. Raises, naming ``name`` and the prompt's
    index: a single prompt or record where a list is expected, an empty list or dataset, a dataset
    without a "prompt" column, a record without "prompt" or with other keys than the first
    record's, a column named like a reward function argument (prompts, completions), an element
    of the wrong type, a conversation without a tokenizer that has a chat template."""
    dataset = _dataset(prompts, name)
    if dataset is not None:
        prompts = _dataset_rows(dataset, name, ("prompt",))
    if isinstance(prompts, (str, bytes, torch.Tensor, dict)) or not isinstance(prompts, (list, tuple)):
        single = isinstance(prompts, (str, bytes, torch.Tensor, dict))
        hint = f": wrap a single {'record' if isinstance(prompts, dict) else 'prompt'} in a list" if single else ""
        raise TypeError(f"{name} must be a list of strings, 1-D integer tensors, conversations or dicts with a "
                        f"'prompt' (or a datasets.Dataset), got {type(prompts).__name__}{hint}")
    if len(prompts) == 0:
        raise ValueError(f"{name}: no prompts given")
    if not isinstance(prompts[0], dict):
        for i, p in enumerate(prompts):
            if isinstance(p, dict):
                raise TypeError(f"prompt {i} is a dict among prompts that are not: give every prompt as a dict "
                                "with a 'prompt', or none")
        return PromptSource([_prompt_text(p, tokenizer, f"prompt {i}") for i, p in enumerate(prompts)])
    keys = list(prompts[0])
    clash = [k for k in keys if k in RESERVED_COLUMNS]
    if clash:
        raise ValueError(f"{name}: column {clash[0]!r} has the name of a reward function's own argument "
                         f"({', '.join(RESERVED_COLUMNS)}); rename it")
    columns = {k: [] for k in keys if k != "prompt"}
    texts = []
    for i, record in enumerate(prompts):
        if not isinstance(record, dict):
            raise TypeError(f"prompt {i}: expected a dict with a 'prompt' (as prompt 0), got {type(record).__name__}")
        if "prompt" not in record:
            raise ValueError(f"prompt {i}: the record has no 'prompt' key (its keys: {', '.join(map(str, record))})")
        if list(record) != keys and set(record) != set(keys):
            raise ValueError(f"prompt {i}: its keys ({', '.join(map(str, record))}) differ from prompt 0's "
                             f"({', '.join(map(str, keys))}); every record needs the same columns")
        texts.append(_prompt_text(record["prompt"], tokenizer, f"prompt {i}"))
        for k, column in columns.items():
            column.append(record[k])
    return PromptSource(texts, columns)


def _pair_record(record: dict, tokenizer, where: str) -> dict:
    """A preference record with its conversations rendered: the prompt through the chat template
    with the assistant's turn opened, each response as the text the template adds after it."""
    prompt = record.get("prompt")
    if not is_conversation(prompt):
        for side in ("chosen", "rejected", "ranking"):
            if is_conversation(record.get(side)):
                raise ValueError(f"{where}: field {side!r} is a conversation but 'prompt' is not; give both as "
                                 "conversations or both as text")
        return record
    rendered = render_conversation(prompt, tokenizer, f"{where}: field 'prompt'")

    def response(value, field_name):
        if not is_conversation(value):
            return value  # text after a conversation's rendered prompt
        full = render_conversation(list(prompt) + list(value), tokenizer, f"{where}: field {field_name!r}",
                                   add_generation_prompt=False)  # fmt: skip
        if not full.startswith(rendered):
            raise ValueError(f"{where}: the chat template renders prompt + {field_name} with another beginning "
                             "than the prompt alone, so the response cannot be cut from it; pass text")
        return full[len(rendered) :]

    out = dict(record, prompt=rendered)
    for side in ("chosen", "rejected"):
        if side in record:
            out[side] = response(record[side], side)
    if isinstance(record.get("ranking"), list):
        out["ranking"] = [response(r, f"ranking[{i}]") for i, r in enumerate(record["ranking"])]
    return out


def preference_pairs(data, tokenizer: Tokenizer | None = None, name: str = "pairs") -> list[Preference]:
    """Preference pairs from a list of :class:`Preference` objects or of dicts, or a
    ``datasets.Dataset`` with prompt, chosen and rejected columns (margin optional) or prompt and
    ranking, each as text or conversations (rendered with ``tokenizer``'s chat template). Every
    record is checked as a JSONL line is (:func:`load_preferences`); errors name ``name[i]``."""
    dataset = _dataset(data, name)
    if dataset is not None:
        data = _dataset_rows(dataset, name, ("prompt", "chosen", "rejected"), ("prompt", "ranking"))
    if isinstance(data, (str, bytes, dict, Preference)) or not isinstance(data, (list, tuple)):
        raise TypeError(f"{name} must be a list of Preference objects or of dicts with prompt, chosen and rejected "
                        f"(or a datasets.Dataset), got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{name}: no preference pairs given")
    pairs = []
    for i, item in enumerate(data):
        where = f"{name}[{i}]"
        if isinstance(item, Preference):
            pairs.append(item)
        elif isinstance(item, dict):
            pairs += _known_fields(_pair_record(item, tokenizer, where), where)
        else:
            raise TypeError(f"{where} must be a Preference or a dict with prompt, chosen and rejected, "
                            f"got {type(item).__name__}")
    return pairs


# --------------------------------------------------------------------------- token tensors


def pad(seqs: list[list[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pads token lists to ``(ids [B, S], mask [B, S])``, padding on ``side``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        cols = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, cols] = torch.as_tensor(s, dtype=torch.long)
        mask[i, cols] = True
    return ids, mask


def _check_ids(seq: list[int], vocab_size: int | None, where: str) -> None:
    """Token ids must index the embedding: in [0, vocab_size) (only >= 0 when it is unknown)."""
    low, high = min(seq), max(seq)
    if low < 0 or (vocab_size is not None and high >= vocab_size):
        bad = low if low < 0 else high
        span = f"[0, {vocab_size})" if vocab_size is not None else "the non-negative ints"
        raise ValueError(f"{where}: token id {bad} at position {seq.index(bad)} is outside the vocabulary {span}")


def encode_prompts(prompts, tokenizer: Tokenizer | None = None, device=None, *, vocab_size: int | None = None):
    """Prompts of any kind :func:`prompt_source` takes (strings and conversations need
    ``tokenizer``; other columns are dropped) to left-padded ``(ids [B, P], mask [B, P])``. Raises,
    naming the prompt's index, on an empty prompt or a token id outside ``[0, vocab_size)``
    (default: the tokenizer's), and as :func:`prompt_source` does."""
    prompts = prompt_source(prompts, tokenizer).prompts
    if vocab_size is None and tokenizer is not None:
        vocab_size = tokenizer.vocab_size
    seqs = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if tokenizer is None:
                raise ValueError("prompts are strings: pass a tokenizer to encode them")
            seq = tokenizer.encode(p)
        elif (p.ndim == 1 and not p.is_floating_point() and not p.is_complex()
              and p.dtype != torch.bool):  # fmt: skip
            seq = p.tolist()
        else:
            raise TypeError(f"prompt {i}: expected a string or a 1-D integer tensor, got a {p.ndim}-D {p.dtype} tensor")
        if not seq:
            raise ValueError(f"prompt {i} is empty")
        _check_ids(seq, vocab_size, f"prompt {i}")
        seqs.append(seq)
    pad_id = tokenizer.pad_id if tokenizer is not None else 0
    ids, mask = pad(seqs, pad_id, side="left")
    return ids.to(device), mask.to(device)


def encode_pairs(pairs: list[Preference], tokenizer: Tokenizer, block_size: int, device=None) -> PairBatch:
    """Tokenizes prompt + response + EOS for both sides of each pair; the reward model reads its
    score at the EOS. Raises, naming the record, on an empty prompt or a sequence longer than
    ``block_size``."""
    if not pairs:
        raise ValueError("no preference pairs given")
    sides = {"chosen": [], "rejected": []}
    for i, pair in enumerate(pairs):
        if not isinstance(pair, Preference):
            raise TypeError(f"pairs[{i}] must be a Preference, got {type(pair).__name__}")
        where = pair.source or f"pair {i}"
        _check_margin(pair.margin, where)  # again: the field may have changed since construction
        prompt = tokenizer.encode(pair.prompt)
        if not prompt:
            raise ValueError(f"{where}: empty prompt")
        for side, seqs in sides.items():
            seq = prompt + tokenizer.encode(getattr(pair, side)) + [tokenizer.eos_id]
            _check_ids(seq, tokenizer.vocab_size, f"{where}: prompt + {side}")
            if len(seq) > block_size:
                raise ValueError(
                    f"{where}: prompt + {side} response is {len(seq)} tokens (with EOS), longer "
                    f"than the model's context of {block_size}"
                )
            seqs.append(seq)
    chosen, chosen_mask = pad(sides["chosen"], tokenizer.pad_id)
    rejected, rejected_mask = pad(sides["rejected"], tokenizer.pad_id)
    margin = torch.tensor([p.margin for p in pairs])
    return PairBatch(*(x.to(device) for x in (chosen, chosen_mask, rejected, rejected_mask, margin)))
