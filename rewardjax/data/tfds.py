"""TensorFlow Datasets as a data source: prepared datasets read as our records through grain.

    records = tfds_records("gsm8k_rewardjax", "test", data_dir="/data/tfds")
    records[0]                  # PromptWithAnswer(prompt="Janet's ducks ...", answer="... #### 18")
    grain.MapDataset.source(records).shuffle(seed=0)    # random access, no copy in memory

Three pieces:

- **Builders** for the data shipped in the package, so TFDS prepares them with no
  network: `Gsm8kRewardjax` (`gsm8k_rewardjax`, GSM8K train/test) and
  `HhRlhfHarmlessBase` (`hh_rlhf_harmless_base`, the HH-RLHF harmless-base test pairs
  parsed by `rewardjax.data.hh_rlhf`). `prepare(name, data_dir)` writes them as
  `array_record` files; `python -m rewardjax.data.tfds NAME --data_dir DIR` does the
  same from a shell (TFDS's own `tfds build` command needs TensorFlow).
- **`FeatureMapping`**: which dataset feature fills which field of our record type
  (`PreferencePair`, `StepSolution`, `PromptWithAnswer`). It is checked against the
  dataset's declared features before any example is read; a missing or mistyped
  feature raises `FeatureMappingError` naming the field, the feature, what the dataset
  declares and what was expected.
- **`TfdsRecords`**: a grain random-access data source (`len`, `[i]`) over TFDS's
  `array_record` source that decodes each example into a validated record; an invalid
  example raises `RecordError` naming the dataset, split, example index and field.

Any dataset prepared in `array_record` format in `data_dir` can be read, ours or not
(another dataset needs a mapping; ours declare theirs). No TensorFlow is needed:
TFDS serializes features with its own numpy codecs, and `array_record` files are read
through `tfds.data_source`. TFDS stores floating features as float32, so soft step
labels come back rounded to float32.

Experiments name a source with `DataSource(source="tfds:NAME", data_dir=...)`, e.g.
`--set data.source=tfds:gsm8k_rewardjax data.data_dir=/data/tfds`; our builders are
prepared on first use when `data_dir` does not hold them yet.

`tensorflow_datasets` is imported on first use (the `tfds` extra), so this module and
`DataSource` import without it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import json
import logging
import types
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np

from rewardjax.data.records import PreferencePair, PromptWithAnswer, RecordError, StepSolution

logger = logging.getLogger(__name__)

TFDS_PREFIX = "tfds:"
FILE_FORMAT = "array_record"  # the random-access format grain reads; TFRecord needs TensorFlow

# What each of our fields accepts, as feature kinds (`_fits`, described by `_KIND_TEXT`).
_PROMPT = ("text", "messages")
_RESPONSE = ("text", "messages")
RECORD_FIELDS: dict[type, dict[str, tuple[str, ...]]] = {
    PreferencePair: {"prompt": _PROMPT, "chosen": _RESPONSE, "rejected": _RESPONSE,
                     "margin": ("number",), "subset": ("text",)},
    StepSolution: {"prompt": _PROMPT, "steps": ("texts",), "labels": ("numbers",),
                   "subset": ("text",)},
    PromptWithAnswer: {"prompt": _PROMPT, "answer": ("text", "integer")},
}

_KIND_TEXT = {
    "text": "a text feature (Text(), shape ())",
    "messages": "a sequence of {role, content} text features "
                "(Sequence({'role': Text(), 'content': Text()}))",
    "texts": "a sequence of text (Sequence(Text()))",
    "numbers": "a sequence of numbers (Sequence(float32) or Tensor(shape=(None,)))",
    "number": "a numeric scalar (shape ())",
    "integer": "an integer scalar (shape ())",
}


def _tfds():
    try:
        import tensorflow_datasets
    except ImportError as e:
        raise ImportError("TFDS data sources need tensorflow-datasets: "
                          "pip install 'rewardjax[tfds]'") from e
    return tensorflow_datasets


class FeatureMappingError(ValueError):
    """A feature mapping that does not fit the dataset's declared features."""


# ---------------------------------------------------------------------------------------
# Feature kinds: judged from a feature's shape and numpy dtype, so any FeatureConnector
# with the right structure fits (Text, Tensor(dtype=str), Scalar, ClassLabel, ...).


def _is_string(dtype) -> bool:
    return np.dtype(dtype).kind in "OSU"


def _is_number(dtype) -> bool:
    return np.dtype(dtype).kind in "iuf"


def _fits(feature, kind: str) -> bool:
    shape, dtype = feature.shape, feature.np_dtype
    if kind == "messages":
        return (isinstance(shape, Mapping) and {"role", "content"} <= set(shape)
                and all(tuple(shape[k]) == (None,) and _is_string(dtype[k])
                        for k in ("role", "content")))
    if isinstance(shape, Mapping):
        return False
    if kind in ("text", "number", "integer") and tuple(shape) != ():
        return False
    if kind in ("texts", "numbers") and tuple(shape) != (None,):
        return False
    if kind in ("text", "texts"):
        return _is_string(dtype)
    if kind == "integer":
        return np.dtype(dtype).kind in "iu"
    return _is_number(dtype)


def _text(value, field: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(field, f"UTF-8 text ({e.reason} at byte {e.start})", value) from None


def _decode(value, kind: str, field: str):
    if kind == "text":
        return _text(value, field)
    if kind == "messages":
        roles, contents = value["role"], value["content"]
        return tuple({"role": _text(r, f"{field}[{i}].role"),
                      "content": _text(c, f"{field}[{i}].content")}
                     for i, (r, c) in enumerate(zip(roles, contents)))
    if kind == "texts":
        return tuple(_text(v, f"{field}[{i}]") for i, v in enumerate(value))
    if kind == "numbers":
        return tuple(float(v) for v in np.asarray(value).reshape(-1))
    if kind == "integer":
        return str(int(value))
    return float(value)


def _lookup(tree, path: str):
    """`tree["a"]["b"]` for the feature path "a/b" (KeyError if any part is missing)."""
    for part in path.split("/"):
        if not isinstance(tree, Mapping) and not hasattr(tree, "keys"):
            raise KeyError(part)
        tree = tree[part]
    return tree


def _one_line(feature) -> str:
    return " ".join(repr(feature).split())


@dataclasses.dataclass(frozen=True, kw_only=True)
class FeatureMapping:
    """Which dataset feature fills which field of a record type.

    Attributes:
      record_type: `PreferencePair`, `StepSolution` or `PromptWithAnswer`.
      features: our field -> the dataset's feature name ("a/b" reaches a nested
        FeaturesDict). Every required field of `record_type` is mapped; optional ones
        (`margin`, `subset`) may be.

    A prompt or response feature is text or a sequence of {role, content} messages;
    `steps` a sequence of text; `labels` a sequence of numbers; `answer` text or an
    integer (written as its decimal string).
    """

    record_type: type
    features: Mapping[str, str]

    def __post_init__(self):
        if self.record_type not in RECORD_FIELDS:
            names = ", ".join(t.__name__ for t in RECORD_FIELDS)
            raise ValueError(f"FeatureMapping.record_type must be one of {names}, "
                             f"got {self.record_type!r}")
        fields = RECORD_FIELDS[self.record_type]
        if not isinstance(self.features, Mapping):
            raise ValueError("FeatureMapping.features must map our field names to feature "
                             f"names, got {self.features!r}")
        for ours, theirs in self.features.items():
            if ours not in fields:
                raise ValueError(f"FeatureMapping.features: {self.record_type.__name__} has no "
                                 f"field {ours!r}; fields: {', '.join(fields)}")
            if not isinstance(theirs, str) or not theirs:
                raise ValueError(f"FeatureMapping.features[{ours!r}] must be a feature name, "
                                 f"got {theirs!r}")
        missing = [f for f in self.record_type.required if f not in self.features]
        if missing:
            raise ValueError(f"FeatureMapping.features must map every required "
                             f"{self.record_type.__name__} field; missing: {', '.join(missing)}")
        # A private copy: the caller's dict is never shared, and the mapping stays frozen.
        object.__setattr__(self, "features", types.MappingProxyType(dict(self.features)))

    def __reduce__(self):
        # A mappingproxy does not pickle; grain's worker processes pickle their sources.
        return _feature_mapping, (self.record_type, dict(self.features))

    @classmethod
    def parse(cls, record_type: type, items: Sequence[str]) -> "FeatureMapping":
        """From `("field=feature", ...)`, the form a command line gives."""
        features = {}
        for item in items:
            ours, sep, theirs = item.partition("=")
            if not sep:
                raise ValueError(f"feature mapping item {item!r} is not of the form "
                                 "field=feature")
            features[ours.strip()] = theirs.strip()
        return cls(record_type=record_type, features=features)

    def kinds(self, features) -> dict[str, str]:
        """Our field -> the kind its feature has; checks `features` (a FeaturesDict).

        Raises:
          FeatureMappingError: a mapped feature the dataset does not declare, or one
            whose type does not fit the field.
        """
        out = {}
        for ours, theirs in self.features.items():
            field = f"{self.record_type.__name__}.{ours}"
            try:
                feature = _lookup(features, theirs)
            except KeyError:
                declared = ", ".join(sorted(features.keys()))
                raise FeatureMappingError(
                    f"{field} is mapped to feature {theirs!r}, which the dataset does not "
                    f"have; expected one of its features: {declared}") from None
            kinds = RECORD_FIELDS[self.record_type][ours]
            kind = next((k for k in kinds if _fits(feature, k)), None)
            if kind is None:
                expected = " or ".join(_KIND_TEXT[k] for k in kinds)
                raise FeatureMappingError(
                    f"{field} is mapped to feature {theirs!r}: expected {expected}, "
                    f"found {_one_line(feature)}")
            out[ours] = kind
        return out


def _feature_mapping(record_type: type, features: dict) -> FeatureMapping:
    return FeatureMapping(record_type=record_type, features=features)


class TfdsRecords(Sequence):
    """Our records over a TFDS random-access source (a grain `RandomAccessDataSource`).

    `records[i]` reads and decodes example i (TFDS's order: with shuffling disabled, as
    ours are, the order the builder wrote); `grain.MapDataset.source(records)` shuffles,
    batches and checkpoints over it like any other source.
    """

    def __init__(self, source, mapping: FeatureMapping, kinds: Mapping[str, str], *,
                 name: str, split: str, data_dir: str | Path | None):
        self._source, self.mapping, self._kinds = source, mapping, dict(kinds)
        self.name, self.split, self.data_dir = name, split, data_dir

    def __reduce__(self):
        # TFDS's source holds the builder (not picklable); a worker process reopens it.
        return _reopen, (self.name, self.split, self.data_dir, self.mapping)

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}[{self.split}] has {len(self)} examples, "
                             f"asked for example {index}")
        index %= len(self)
        example = self._source[index]
        where = f"{TFDS_PREFIX}{self.name}[{self.split}] example {index}"
        try:
            fields = {ours: _decode(_lookup(example, theirs), self._kinds[ours], ours)
                      for ours, theirs in self.mapping.features.items()}
            return self.mapping.record_type(**fields)
        except RecordError as e:
            theirs = self.mapping.features.get((e.field or "").split("[")[0].split(".")[0])
            if theirs is not None:
                where += f" (feature {theirs!r})"
            raise RecordError(e.field, e.expected, e.got, path=where) from None

    def __repr__(self) -> str:
        return (f"TfdsRecords({self.name!r}, split={self.split!r}, "
                f"{self.mapping.record_type.__name__}, {len(self)} examples)")


# ---------------------------------------------------------------------------------------
# Builders for the shipped data.


def _asset(*parts: str) -> Path:
    return Path(str(resources.files("rewardjax"))).joinpath("assets", "data", *parts)


@functools.cache
def _builders() -> dict[str, type]:
    """Our builder classes by dataset name (defined once: TFDS registers each by name)."""
    tfds = _tfds()
    from rewardjax.data.hh_rlhf import read_hh_rlhf
    from rewardjax.data.readers import iter_json_lines

    features = tfds.features

    class Gsm8kRewardjax(tfds.core.GeneratorBasedBuilder):
        """GSM8K grade-school math word problems, from the copy shipped in the package.

        "Training Verifiers to Solve Math Word Problems" (Cobbe et al., arXiv:2110.14168):
        splits train (7,473) and test (1,319); `question` and `answer` (the worked
        solution ending in `#### <number>`) as in the source files, in file order.
        """

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "The GSM8K train/test files shipped with rewardjax."}
        MAPPING = FeatureMapping(record_type=PromptWithAnswer,
                                 features={"prompt": "question", "answer": "answer"})

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, description=self.__doc__, license="MIT",
                homepage="https://github.com/openai/grade-school-math",
                citation="Cobbe et al. 2021, Training Verifiers to Solve Math Word "
                         "Problems, arXiv:2110.14168",
                features=features.FeaturesDict({"question": features.Text(),
                                                "answer": features.Text()}),
                # Example i is line i of the file, as the JSONL readers give it.
                disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(_asset("gsm8k", f"{split}.jsonl"))
                    for split in ("train", "test")}

        def _generate_examples(self, path):
            for line, obj in iter_json_lines(path):
                yield line, {"question": obj["question"], "answer": obj["answer"]}

    class HhRlhfHarmlessBase(tfds.core.GeneratorBasedBuilder):
        """Anthropic HH-RLHF harmless-base test pairs as chat preference pairs.

        "Training a Helpful and Harmless Assistant with Reinforcement Learning from Human
        Feedback" (Bai et al., arXiv:2204.05862). The 2,312 shipped pairs are parsed by
        `rewardjax.data.hh_rlhf.read_hh_rlhf` (shared turns as `prompt` messages, final
        replies as `chosen` / `rejected`); split `test`, in file order.
        """

        VERSION = tfds.core.Version("1.0.0")
        RELEASE_NOTES = {"1.0.0": "The harmless-base test split shipped with rewardjax."}
        MAPPING = FeatureMapping(record_type=PreferencePair,
                                 features={f: f for f in ("prompt", "chosen", "rejected",
                                                          "subset")})

        def _info(self):
            message = {"role": features.Text(), "content": features.Text()}
            return tfds.core.DatasetInfo(
                builder=self, description=self.__doc__, license="MIT",
                homepage="https://github.com/anthropics/hh-rlhf",
                citation="Bai et al. 2022, Training a Helpful and Harmless Assistant with "
                         "Reinforcement Learning from Human Feedback, arXiv:2204.05862",
                features=features.FeaturesDict({
                    "prompt": features.Sequence(message), "chosen": features.Text(),
                    "rejected": features.Text(), "subset": features.Text()}),
                disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {"test": self._generate_examples(_asset("hh-rlhf",
                                                           "harmless-base-test.jsonl.gz"))}

        def _generate_examples(self, path):
            for i, pair in enumerate(read_hh_rlhf(path).records):
                yield i, {"prompt": [m.to_json() for m in pair.prompt], "chosen": pair.chosen,
                          "rejected": pair.rejected, "subset": pair.subset}

    return {"gsm8k_rewardjax": Gsm8kRewardjax, "hh_rlhf_harmless_base": HhRlhfHarmlessBase}


def __getattr__(name: str):
    # The builder classes exist once tensorflow_datasets is imported (on first use).
    if name in ("Gsm8kRewardjax", "HhRlhfHarmlessBase"):
        return next(cls for cls in _builders().values() if cls.__name__ == name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


BUILDERS = ("gsm8k_rewardjax", "hh_rlhf_harmless_base")


@contextlib.contextmanager
def _quiet(sink: io.StringIO):
    """TFDS's banners, progress bars and its warning about the version folder it is
    about to fill go to `sink`; ours is one log line."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        absl_logger.setLevel(level)


def prepare(name: str, data_dir: str | Path | None = None, *,
            max_examples_per_split: int | None = None):
    """Prepares one of our builders (`BUILDERS`) in `data_dir` as array_record files.

    Offline: the examples come from the package's data files. A dataset already
    prepared there is reused. `max_examples_per_split` writes only the first N examples
    of each split (for quick tests). Returns the builder.
    """
    if name not in BUILDERS:
        raise ValueError(f"prepare: no rewardjax builder named {name!r}; builders: "
                         f"{', '.join(BUILDERS)} (prepare other datasets with TFDS itself, "
                         f"file_format={FILE_FORMAT!r})")
    tfds = _tfds()
    captured = io.StringIO()
    with _quiet(captured):
        builder = _builders()[name](data_dir=None if data_dir is None else str(data_dir),
                                    file_format=FILE_FORMAT)
        if builder.is_prepared():
            return builder
        config = tfds.download.DownloadConfig(max_examples_per_split=max_examples_per_split)
        builder.download_and_prepare(download_config=config)
    logger.debug("tfds output while preparing %s:\n%s", name, captured.getvalue())
    logger.info("prepared TFDS dataset %s %s in %s (%s)", name, builder.version,
                builder.data_dir, ", ".join(f"{s}: {i.num_examples}"
                                            for s, i in builder.info.splits.items()))
    return builder


def _prepared_builder(name: str, data_dir: str | Path | None):
    tfds = _tfds()
    if name in BUILDERS:
        return prepare(name, data_dir)
    where = "TFDS's default data_dir" if data_dir is None else f"data_dir {data_dir}"
    try:
        builder = tfds.builder(name, data_dir=None if data_dir is None else str(data_dir))
    except tfds.core.registered.DatasetNotFoundError:
        raise FileNotFoundError(
            f"no TFDS dataset {name!r} in {where} (expected <data_dir>/{name}/<version>/"
            f"dataset_info.json); prepare it with TFDS (file_format={FILE_FORMAT!r}) or use "
            f"one of ours: {', '.join(BUILDERS)}") from None
    if not builder.is_prepared():
        raise FileNotFoundError(f"TFDS dataset {name!r} is not prepared in {where}; prepare "
                                f"it with TFDS (file_format={FILE_FORMAT!r})")
    return builder


def tfds_records(name: str, split: str, *, data_dir: str | Path | None = None,
                 mapping: FeatureMapping | None = None,
                 record_type: type | None = None) -> TfdsRecords:
    """Records of a prepared TFDS dataset's split, read through a random-access source.

    Args:
      name: a TFDS dataset name (`"name"`, `"name:1.0.0"`, `"name/config"`); our
        builders (`BUILDERS`) are prepared in `data_dir` first if needed.
      split: a TFDS split, slices included (`"train"`, `"test[:100]"`, `"all"`).
      data_dir: where the dataset is prepared (None: TFDS's default).
      mapping: feature -> field mapping; default the builder's own (ours declare one).
      record_type: the record type the caller reads, checked against the mapping's.

    Raises:
      FeatureMappingError: the mapping does not fit the dataset's features (checked
        before any example is read).
      FileNotFoundError: the dataset is not prepared in `data_dir`.
    """
    builder = _prepared_builder(name, data_dir)
    if mapping is None:
        mapping = getattr(type(builder), "MAPPING", None)
        if mapping is None:
            raise ValueError(f"TFDS dataset {name!r} declares no mapping to our records: pass "
                             "mapping=FeatureMapping(record_type=..., features={field: "
                             "feature}) (in an experiment: data.features=field=feature,...)")
    if record_type is not None and mapping.record_type is not record_type:
        raise FeatureMappingError(
            f"TFDS dataset {name!r} is mapped to {mapping.record_type.__name__} records; "
            f"expected {record_type.__name__} (map its features to {record_type.__name__} "
            "fields: mapping=FeatureMapping(...), in an experiment data.features="
            "field=feature,...)")
    try:
        kinds = mapping.kinds(builder.info.features)
    except FeatureMappingError as e:
        raise FeatureMappingError(f"TFDS dataset {name!r} ({builder.data_dir}): {e}") from None
    source = builder.as_data_source(split=split)
    return TfdsRecords(source, mapping, kinds, name=name, split=split, data_dir=data_dir)


def _reopen(name, split, data_dir, mapping) -> TfdsRecords:
    return tfds_records(name, split, data_dir=data_dir, mapping=mapping)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSource:
    """Where an experiment's records come from.

    Attributes:
      source: "synthetic" (the experiment's own generated task) or "tfds:NAME" (a TFDS
        dataset prepared in `data_dir`; ours are prepared on first use).
      data_dir: the TFDS data_dir (None: TFDS's default, `~/tensorflow_datasets`).
      split: the split training reads; eval_split: the one evaluation reads.
      features: `field=feature` items mapping the dataset's features to the record's
        fields (empty: the builder's own mapping).
    """

    source: str = "synthetic"
    data_dir: str | None = None
    split: str = "train"
    eval_split: str = "test"
    features: tuple[str, ...] = ()

    def __post_init__(self):
        if self.source != "synthetic" and not (
                isinstance(self.source, str) and self.source.startswith(TFDS_PREFIX)
                and self.source[len(TFDS_PREFIX):]):
            raise ValueError(f"DataSource.source must be 'synthetic' or '{TFDS_PREFIX}NAME', "
                             f"got {self.source!r}")
        for name in ("split", "eval_split"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"DataSource.{name} must be a TFDS split name, got "
                                 f"{getattr(self, name)!r}")
        object.__setattr__(self, "features", tuple(self.features))
        # The fields are checked against the experiment's record type when it reads.
        for item in self.features:
            if not isinstance(item, str) or "=" not in item:
                raise ValueError(f"DataSource.features items are field=feature, got {item!r}")

    @property
    def is_tfds(self) -> bool:
        return self.source.startswith(TFDS_PREFIX)

    def records(self, record_type: type, *, split: str | None = None) -> TfdsRecords:
        """The TFDS records of `split` (default `self.split`) as `record_type`."""
        if not self.is_tfds:
            raise ValueError(f"DataSource.records: source {self.source!r} is not a TFDS "
                             "dataset")
        mapping = FeatureMapping.parse(record_type, self.features) if self.features else None
        return tfds_records(self.source[len(TFDS_PREFIX):], split or self.split,
                            data_dir=self.data_dir, mapping=mapping, record_type=record_type)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m rewardjax.data.tfds",
        description="Prepare a rewardjax TFDS dataset offline (array_record files).")
    parser.add_argument("name", choices=BUILDERS)
    parser.add_argument("--data_dir", default=None, help="TFDS data_dir (default: TFDS's)")
    parser.add_argument("--max_examples_per_split", type=int, default=None)
    args = parser.parse_args(argv)
    builder = prepare(args.name, args.data_dir, max_examples_per_split=args.max_examples_per_split)
    print(json.dumps({"name": args.name, "version": str(builder.version),
                      "dir": str(builder.data_dir),
                      "splits": {s: i.num_examples for s, i in builder.info.splits.items()}}))


if __name__ == "__main__":
    main()
