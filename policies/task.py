"""The consortium's task as frozen, validated objects: what is learnt, from which data, by which
model.

A task is reviewed data (``policies/tasks/*.yaml``) beside the policy: the modality (tabular or
image), the label and its classes, the model family, the fixed train/test split and, for
tabular data, every feature column (:mod:`policies.task_columns`); for images, their size,
channels and pixel scaling. Like the policy it is parsed once at the edge (strict, finite
numbers, unknown keys are errors), travels with every instruction as canonical JSON with its
hash, and is recorded with the run and in every receipt.

``preprocessing: fixed`` says that every statistic shaping training is declared here (ranges,
imputation values, levels, pixel scaling) rather than computed from a site's data; it is the only
value this version accepts (a DP-computed statistic is not implemented).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from policies.task_augmentation import Augmentation
from policies.task_columns import Column, ColumnName, column_features
from policies.task_features import HEAD_FAMILIES, Features, flat_dim
from policies.task_privacy import PrivacyUnitSpec

TASK_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
ClassValue = Annotated[StrictStr, Field(min_length=1, max_length=64)] | StrictInt
MAX_CLASSES = 1000


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class ClassSpec(_Frozen):
    """One class: its name, the label values that mean it, and (images) its folder."""

    name: StrictStr = Field(min_length=1, max_length=128)
    values: tuple[ClassValue, ...] = Field(
        min_length=1, max_length=64,
        description="Label values (tabular label cells, npz labels) that mean this class.")
    folder: StrictStr | None = Field(
        None, min_length=1, max_length=128,
        description="Image folder of this class (default: its name).")

    @property
    def folder_name(self) -> str:
        """The folder that holds this class's images in a folder-per-class layout."""
        return self.folder or self.name


class LabelSpec(_Frozen):
    """The label: its column (tabular), its classes, and how many a site must hold."""

    column: ColumnName | None = Field(None, description="Label column (tabular tasks only).")
    classes: tuple[ClassSpec, ...] = Field(min_length=2, max_length=MAX_CLASSES)
    min_classes_per_site: StrictInt = Field(
        2, ge=2, description="A site whose training data holds fewer classes is refused.")

    @model_validator(mode="after")
    def _consistent(self) -> LabelSpec:
        names, values, folders = set(), set(), set()
        for i, cls in enumerate(self.classes):
            if cls.name in names:
                raise ValueError(f"classes[{i}].name {cls.name!r} is listed twice")
            if cls.folder_name in folders:
                raise ValueError(f"classes[{i}]: folder {cls.folder_name!r} is used twice")
            names.add(cls.name)
            folders.add(cls.folder_name)
            for value in cls.values:
                key = str(value)
                if key in values:
                    raise ValueError(f"classes[{i}].values: label value {value!r} belongs to "
                                     "two classes")
                values.add(key)
        if self.min_classes_per_site > len(self.classes):
            raise ValueError(f"min_classes_per_site ({self.min_classes_per_site}) exceeds the "
                             f"number of classes ({len(self.classes)})")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """Class names in index order (the model's outputs)."""
        return tuple(c.name for c in self.classes)


class LogisticModel(_Frozen):
    """Multinomial logistic regression (one linear layer, softmax over the classes)."""

    family: Literal["logistic"]


class MLPModel(_Frozen):
    """A small multi-layer perceptron with ReLU activations."""

    family: Literal["mlp"]
    hidden: tuple[Annotated[StrictInt, Field(ge=1, le=4096)], ...] = Field(
        min_length=1, max_length=8, description="Width of each hidden layer.")


class CNNModel(_Frozen):
    """A small Opacus-compatible CNN: 3×3 conv blocks with GroupNorm, ReLU and pooling."""

    family: Literal["cnn"]
    channels: tuple[Annotated[StrictInt, Field(ge=1, le=512)], ...] = Field(
        min_length=1, max_length=6, description="Output channels of each conv block.")
    groups: StrictInt = Field(4, ge=1, le=64, description="GroupNorm groups (at most).")
    head_grid: StrictInt = Field(
        4, ge=1, le=8,
        description="The last feature map is average-pooled to at most this many cells a side "
                    "before the linear layer; 1 is global average pooling, which forgets where "
                    "a shape is and trains poorly on small images.")


class ResNet18Model(_Frozen):
    """An imaging-size ResNet-18-class network, Opacus-compatible: 4 stages of 2 basic blocks
    with GroupNorm (no BatchNorm) and out-of-place residual adds; torchvision's 7×7 stem for
    images of at least 64 pixels, a 3×3 stem below."""

    family: Literal["resnet18"]
    widths: tuple[Annotated[StrictInt, Field(ge=1, le=1024)], ...] = Field(
        (64, 128, 256, 512), min_length=4, max_length=4,
        description="Channels of the 4 stages (ResNet-18: 64, 128, 256, 512).")
    groups: StrictInt = Field(32, ge=1, le=64, description="GroupNorm groups (at most).")


IMAGE_FAMILIES = (CNNModel, ResNet18Model)
Model = Annotated[LogisticModel | MLPModel | CNNModel | ResNet18Model,
                  Field(discriminator="family")]


class SplitSpec(_Frozen):
    """The fixed train/test split every site makes of its own rows (unless its file holds one)."""

    test_fraction: StrictFloat = Field(gt=0, lt=1, description="Share of rows for testing.")
    seed: StrictInt = Field(ge=0, le=2**32 - 1, description="Seed of the split.")
    stratified: StrictBool = Field(True, description="The same share of each class.")


class _Task(_Frozen):
    version: Literal[1] = 1
    name: StrictStr = Field(description="Task id: lower-case letters, digits, '_' and '-'.")
    description: StrictStr = Field("", max_length=2000)
    preprocessing: Literal["fixed"] = Field(
        description="'fixed': every statistic that shapes training is declared in this file.")
    label: LabelSpec
    model: Model
    split: SplitSpec
    privacy_unit: PrivacyUnitSpec = Field(
        default_factory=PrivacyUnitSpec,
        description="What one ε protects (record or patient) and where patient ids come from.")

    @field_validator("name")
    @classmethod
    def _task_name(cls, value: str) -> str:
        if TASK_NAME.fullmatch(value) is None:
            raise ValueError(f"invalid task name {value!r} (lower-case letters, digits, '_' "
                             "and '-', 1-63 chars)")
        return value

    @property
    def num_classes(self) -> int:
        """Number of classes (the model's outputs)."""
        return len(self.label.classes)

    def for_members(self, sites: Sequence[str]) -> Self:
        """This task as a run with these member sites trains it (itself, unless a tabular
        task appends a site indicator)."""
        del sites
        return self


class TabularTask(_Task):
    """A table: one row per record, a label column and declared feature columns."""

    modality: Literal["tabular"]
    columns: tuple[Column, ...] = Field(min_length=1, max_length=2000)
    ignore_columns: tuple[ColumnName, ...] = Field(
        (), max_length=100, description="Columns a file may hold that the task does not use "
        "(identifiers); any other extra column is an error.")
    site_indicator: StrictBool = Field(
        False, description="Append a one-hot of the site among the run's member sites (a "
        "per-site intercept: each hospital's base rate). Fixed by the membership, not by data.")
    _site_levels: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _consistent(self) -> TabularTask:
        if self.label.column is None:
            raise ValueError("label.column: a tabular task names its label column")
        seen: dict[str, str] = {}
        names = [(f"columns[{i}]", c.name) for i, c in enumerate(self.columns)]
        names += [(f"ignore_columns[{i}]", n) for i, n in enumerate(self.ignore_columns)]
        names.append(("label.column", self.label.column))
        for where, name in names:
            if name in seen:
                raise ValueError(f"{where}: column {name!r} is already declared as "
                                 f"{seen[name]}")
            seen[name] = where
        if isinstance(self.model, IMAGE_FAMILIES):
            raise ValueError(f"model.family: {self.model.family} is for image tasks (use "
                             "logistic or mlp)")
        self.privacy_unit.check("tabular")
        patient = self.privacy_unit.patient_column
        if patient is not None and patient in seen and seen[patient] != (
                f"ignore_columns[{self.ignore_columns.index(patient)}]"
                if patient in self.ignore_columns else ""):
            raise ValueError(f"privacy_unit.patient_column: {patient!r} is {seen[patient]}; "
                             "a patient id never enters the model")
        return self

    def feature_names(self) -> tuple[str, ...]:
        """The fixed feature layout every site produces, in order (with the site indicator of
        the run's members last, once :meth:`for_members` set them)."""
        names = tuple(name for c in self.columns for name in column_features(c))
        return names + tuple(f"site={s}" for s in self.site_levels)

    @property
    def site_levels(self) -> tuple[str, ...]:
        """The run's member sites of the site indicator (empty outside a run)."""
        return self._site_levels

    def for_members(self, sites: Sequence[str]) -> Self:
        """This task as a run with these member sites trains it (their indicator appended)."""
        if not self.site_indicator:
            return self
        copy = self.model_copy()
        copy._site_levels = tuple(sites)
        return copy

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example's features."""
        return (len(self.feature_names()),)

    @property
    def model_input_shape(self) -> tuple[int, ...]:
        """Shape of one example as the model takes it (its features)."""
        return self.input_shape


class ImageSpec(_Frozen):
    """Size, channels and the fixed pixel scaling of every image."""

    height: StrictInt = Field(ge=1, le=4096)
    width: StrictInt = Field(ge=1, le=4096)
    channels: Literal[1, 3] = Field(description="1: 8-bit grayscale; 3: 8-bit RGB.")
    pixel_scaling: Literal["divide-by-255"] = Field(
        description="8-bit pixel values are divided by 255 (fixed, the same at every site).")


class ImageTask(_Task):
    """Images of a fixed size: a folder per class (PNG/JPEG) or a MedMNIST-format ``.npz``."""

    modality: Literal["image"]
    image: ImageSpec
    features: Features | None = Field(
        None, exclude_if=lambda v: v is None,
        description="A fixed, data-independent feature extractor (wavelet scattering or a "
        "frozen public backbone) computed at the site; the model (logistic or mlp) trains on "
        "its output. Absent: the model trains on the pixels.")
    augmentation: Augmentation | None = Field(
        None, exclude_if=lambda v: v is None,
        description="Augmentation multiplicity: each sampled training image's gradient is the "
        "average over this many randomly transformed copies (the transforms the task names), "
        "clipped once; the privacy cost is unchanged. Only for a model on the pixels.")

    @model_validator(mode="after")
    def _consistent(self) -> ImageTask:
        self._check_features()
        if self.label.column is not None:
            raise ValueError("label.column: an image task has no label column (classes come "
                             "from folders or the npz labels)")
        for i, cls in enumerate(self.label.classes):
            if any(not isinstance(v, int) for v in cls.values):
                raise ValueError(f"label.classes[{i}].values: image labels are integers")
        self.privacy_unit.check("image")
        return self

    def _check_features(self) -> None:
        if self.augmentation is not None:
            problem = self.augmentation.problem(self.image.height, self.image.width)
            if self.features is not None:
                problem = (f"features ({self.features.kind}) are computed once per image; "
                           "augmentation needs a model on the pixels")
            if problem is not None:
                raise ValueError(f"augmentation: {problem}")
        if self.features is None:
            return
        if self.model.family not in HEAD_FAMILIES:
            raise ValueError(f"model.family: {self.model.family} trains on pixels; with "
                             f"features ({self.features.kind}) the model is a head on them: "
                             "use logistic or mlp")
        if self.features.kind == "scattering":
            problem = self.features.problem(self.image.height, self.image.width)
            if problem is not None:
                raise ValueError(f"features.J: {problem}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example as read: channels, height, width."""
        return (self.image.channels, self.image.height, self.image.width)

    @property
    def model_input_shape(self) -> tuple[int, ...]:
        """Shape of one example as the model takes it: the image, or its flattened features."""
        if self.features is None:
            return self.input_shape
        return (flat_dim(self.features.output_shape(*self.input_shape)),)


Task = Annotated[TabularTask | ImageTask, Field(discriminator="modality")]
AnyTask = TabularTask | ImageTask
