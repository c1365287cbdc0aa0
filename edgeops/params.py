"""Typed, frozen parameters: one model per stage, one key per stage in params.yaml.

A typo in params.yaml fails loudly (extra="forbid"). A component takes its own stage's
params, never the whole file. Missing keys take the embedded defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeops.errors import ConfigError


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PrepareParams(_Params):
    image_size: int = Field(32, ge=8, le=512, description="height = width of the model input")
    channels: Literal[1, 3] | None = Field(None, description="None: 1 if every image is grayscale, else 3")
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0, lt=0.5)
    field_fraction: float = Field(0.1, ge=0, lt=0.5, description="held-out frames the fleet simulator draws")
    split_salt: str = Field("edgeops-splits-1", min_length=1, description="salt of the content-hash split rule")
    near_duplicate_rms: float = Field(
        0.03, ge=0, lt=1, description="signature distance (8x8 grey, [0,1]) at which images share a split"
    )
    seed: int = Field(42, description="not used by splits (they come from content and split_salt)")
    min_per_class: int = Field(10, ge=1)
    max_imbalance: float = Field(10.0, ge=1, description="largest class / smallest class")
    max_images: int | None = Field(None, description="cap for quick runs (per-class subset chosen by content)")
    fail_on_validation: bool = True

    @model_validator(mode="after")
    def _fractions_leave_train(self) -> PrepareParams:
        if self.val_fraction + self.test_fraction + self.field_fraction > 0.8:
            raise ValueError("val_fraction + test_fraction + field_fraction must leave at least 0.2 for train")
        return self


class AugmentParams(_Params):
    rotation_deg: float = Field(10.0, ge=0, le=180)
    brightness: float = Field(0.1, ge=0, le=1, description="max additive change, fraction of range")
    contrast: float = Field(0.1, ge=0, le=1, description="max relative contrast change")
    blur_prob: float = Field(0.0, ge=0, le=1)
    noise_std: float = Field(0.0, ge=0, le=1)


class DistillParams(_Params):
    enabled: bool = True
    temperature: float = Field(4.0, gt=0)
    soft_weight: float = Field(0.9, ge=0, le=1, description="weight of the soft loss vs the hard loss")
    teacher_alpha: float = Field(2.0, gt=0)
    teacher_epochs: int = Field(20, ge=1)


class TrainParams(_Params):
    alpha: float = Field(1.0, gt=0, le=4, description="width multiplier")
    epochs: int = Field(30, ge=1, description="distillation needs the longer schedule")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(2e-3, gt=0)
    bn_momentum: float = Field(0.9, gt=0, lt=1)
    seed: int = 42
    augment: AugmentParams = AugmentParams()
    distill: DistillParams = DistillParams()


class SweepParams(_Params):
    """The alpha x rho architecture sweep (`edgeops sweep`, or `dvc exp run -S sweep...`)."""

    alphas: list[float] = Field([0.25, 0.5, 1.0], min_length=1, description="width multipliers")
    resolutions: list[int] = Field([16, 24, 32], min_length=1, description="input sizes rho (pixels)")
    epochs: int | None = Field(None, ge=1, description="None: train.epochs")
    distill: bool = Field(False, description="distil every point from a teacher (slower)")


class CompressParams(_Params):
    methods: list[str] = Field(
        ["prune", "qat"],
        description="any of prune, cluster, qat, prune_cluster, pqat, pcqat, structured (components.compression)",
    )
    prune_sparsity: float = Field(0.8, ge=0, lt=1, description="final share of zero kernel weights")
    prune_epochs: int = Field(10, ge=1)
    clusters: int = Field(16, ge=2, description="shared weight values per kernel")
    cluster_epochs: int = Field(5, ge=1)
    qat_epochs: int = Field(5, ge=1)
    learning_rate: float = Field(3e-4, gt=0, description="fine-tuning: well below the training rate")
    batch_size: int = Field(32, ge=1)
    distill: bool = Field(True, description="fine-tunes learn from the teacher's (or float parent's) soft targets")
    temperature: float = Field(4.0, gt=0)
    soft_weight: float = Field(0.7, ge=0, le=1, description="soft vs hard loss in compression fine-tunes")
    augment: bool = Field(True, description="fine-tune on the training augmentation (train.augment)")
    seed: int = 42
    structured_ratio: float = Field(0.4, ge=0, lt=1, description="share of each conv's channels removed")
    structured_importance: Literal["l1", "bn"] = Field("l1", description="BN-folded filter L1 norm, or |gamma|")
    structured_epochs: int = Field(10, ge=1, description="fine-tune epochs after removing channels (over all rounds)")
    structured_learning_rate: float | None = Field(
        None, gt=0, description="structured fine-tune rate (None: learning_rate); the rebuilt network has lost "
        "whole channels and recovers like a short training run, near the training rate",
    )
    structured_rounds: int = Field(
        1, ge=1, le=4, description="prune-then-fine-tune rounds, each removing an equal share of the channels "
        "left so the total is structured_ratio (Li et al. 2017's iterative recipe); epochs split evenly",
    )
    cluster_per_channel: bool = Field(True, description="per-output-channel codebooks on a BN-folded copy")


class ConvertParams(_Params):
    targets: list[str] = Field(
        ["tflite-f32", "tflite-f16", "tflite-dynamic", "tflite-int8", "onnx"],
        description="[] builds every target some profile in devices.yaml runs",
    )
    representative_samples: int = Field(200, ge=1)
    min_agreement: float = Field(0.99, ge=0, le=1, description="top-1 agreement with the float model")
    latency_runs: int = Field(50, ge=1)
    int8_per_channel: bool = Field(
        True,
        description="per-channel int8 weights (accuracy); False: per-tensor, which drops a float32 "
        "scale + int64 zero point per output channel (size: ~46 kB on a 257k-parameter model)",
    )


class EvaluateParams(_Params):
    max_accuracy_drop: float = Field(0.02, ge=0, description="non-inferiority margin vs the float parent, absolute")
    max_regression_vs_stable: float = Field(0.01, ge=0, description="non-inferiority margin vs what the cohort runs now")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="one-sided level of the paired non-inferiority tests")
    selection_margin: float = Field(
        0.02, ge=0, lt=1, description="selection: the cheapest variant non-inferior to the best on VALIDATION "
        "within this margin (paired, absolute) is chosen per profile",
    )
    min_feedback: int = Field(
        30, ge=1, description="held-out labelled field feedback images needed to compare challenger and stable on it"
    )


class PublishParams(_Params):
    manifest_ttl_days: int = Field(30, ge=1)
    encrypt: bool = False


class FleetParams(_Params):
    devices_per_cohort: int = Field(4, ge=1)
    hours: float = Field(2.0, gt=0)
    inferences_per_hour: int = Field(120, ge=1)
    sample_rate: float = Field(0.5, gt=0, le=1)
    buffer_size: int = Field(256, ge=1)
    daily_upload_bytes: int = Field(2_000_000, ge=1)
    seed: int = 7
    step_minutes: float = Field(10.0, gt=0, description="simulated time per step")
    offline_fraction: float = Field(0.1, ge=0, lt=1, description="share of time a device is offline")
    mean_offline_hours: float = Field(0.5, gt=0, description="mean length of one offline window")
    store_failure_rate: float = Field(0.05, ge=0, le=1, description="chance per device step that the store fails")
    label_rate: float = Field(0.1, ge=0, le=1, description="share of inferences the user confirms or corrects")
    manifest_poll_minutes: float = Field(15.0, gt=0)
    upload_interval_minutes: float = Field(60.0, gt=0)
    thumb_size: int = Field(8, ge=0, le=64, description="side of the uint8 thumbnail in telemetry; 0: none")


class MonitorParams(_Params):
    drift_share: float = Field(0.5, gt=0, le=1, description="share of drifted features that means drift")
    stattest_threshold: float = Field(0.05, gt=0, lt=1)
    min_samples: int = Field(50, ge=1)
    sustained_windows: int = Field(2, ge=1, description="consecutive drifted windows before a retrain")
    cooldown_hours: float = Field(6.0, ge=0)
    max_retrains_per_day: int = Field(2, ge=0)
    stattest: str = Field("ks", description="Evidently stattest for numerical columns (p-value tests)")
    cat_stattest: str = Field("chisquare", description="Evidently stattest for categorical columns")
    family_wise: bool = Field(
        True,
        description="Bonferroni: each of k tests at stattest_threshold/k, any drifted test means drift "
        "(family-wise false alarm rate <= stattest_threshold); False: Evidently's drift_share rule",
    )
    embedding_method: Literal["mmd", "model", "distance", "ratio"] = "mmd"
    window_hours: float = Field(1.0, gt=0, description="length of one drift window")
    min_labels: int = Field(50, ge=1, description="labelled feedback rows needed for label/concept drift")
    max_accuracy_drop: float = Field(0.05, ge=0, le=1, description="concept drift: accuracy drop vs reference")
    max_reference_rows: int = Field(20000, ge=100, description="reference rows kept per variant")
    trigger: Literal["harm", "drift"] = Field(
        "harm", description="harm: retrain on an accuracy drop; drift: on any significant shift"
    )
    harm_margin: float = Field(0.005, ge=0, le=1, description="accuracy drop (fraction) that is harm")
    harm_alpha: float = Field(0.05, gt=0, lt=1, description="one-sided level of the drop's lower bound")
    harm_min_labels: int = Field(
        20, ge=2, description="labelled rows in a window before measured accuracy also votes on harm"
    )
    allowed_lateness_minutes: float | None = Field(
        None, ge=0, description="watermark lag after a window's end; None: fleet.upload_interval_minutes"
    )
    late_reopen_share: float = Field(0.2, ge=0, description="late rows above this share re-open a window")
    segment_fdr: float = Field(0.05, gt=0, lt=1, description="Benjamini-Hochberg rate for segment flags")
    min_new_labels: int = Field(20, ge=0, description="new labelled field rows needed before a retrain")
    max_retrains_global_per_day: int = Field(2, ge=0, description="retrains in 24 h across all scopes")
    incident_hours: float = Field(24.0, gt=0, description="how long one harm incident blocks new retrains")


class IngestParams(_Params):
    """Telemetry ingestion limits (monitoring.ingest): checked before a batch is parsed."""

    max_batch_bytes: int = Field(4_000_000, ge=1024, description="larger raw batches are quarantined unread")
    max_batch_rows: int = Field(20_000, ge=1, description="rows per batch, from the Parquet footer")
    max_age_days: float = Field(1095.0, gt=0, description="rows older than this (device clock) are quarantined")
    max_future_hours: float = Field(24.0, ge=0, description="rows this far ahead of ingestion time are quarantined")
    ledger_retention_days: float = Field(30.0, gt=0, description="handled raw batches older than this are deleted")
    max_ranges_per_device: int = Field(256, ge=1, description="seq gaps remembered per device (oldest folded)")


class PipelineParams(_Params):
    prepare: PrepareParams = PrepareParams()
    train: TrainParams = TrainParams()
    sweep: SweepParams = SweepParams()
    compress: CompressParams = CompressParams()
    convert: ConvertParams = ConvertParams()
    evaluate: EvaluateParams = EvaluateParams()
    publish: PublishParams = PublishParams()
    fleet: FleetParams = FleetParams()
    monitor: MonitorParams = MonitorParams()
    ingest: IngestParams = IngestParams()


def load_params(path: Path | str | None, *, required: bool = False) -> PipelineParams:
    """Read params.yaml; a missing default file means all embedded defaults, but a file the user
    named (`required`) that does not exist is an error, never a silent fallback."""
    if path is not None and required and not Path(path).is_file():
        raise ConfigError("params file not found", where=str(path))
    if path is None or not Path(path).exists():
        return PipelineParams()
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return PipelineParams.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file is not valid YAML: {exc}", where=str(path)) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"params key {loc}: {first['msg']}", where=str(path)) from exc
