"""The OREALRun resource (group oreal.io, version v1alpha1) as typed pydantic models.

This module is the one source of truth for the spec: the CRD in `crds/` is generated from it
(`oreal.spec.crd`), and the operator, the workers and the local runner all parse it. YAML keys
are camelCase (Kubernetes convention); Python attributes are snake_case.

Defaults are the OREAL paper's (Lyu et al. 2025, arXiv 2502.06781, §4.1): 64 prompts x 16
samples per step, KL coefficient beta = 0.01, negative-loss coefficient eta = 0.5, policy lr
5e-7 cosine-decayed to 1e-7, token-level reward model lr 2e-6, 10 reward-model warm-up steps,
temperature 1.0 and top-p 0.9.

Rules that span fields live in `model_validator`s and are mirrored as CEL rules
(`x-kubernetes-validations`) in the CRD via `cel_rules`, so that `kubectl apply` rejects the
same specs as `oreal validate`, with the same message.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oreal.spec.base import NonNegativeInt, PositiveInt, Quantity, SpecModel
from oreal.spec.podtemplate import PodTemplateOverrides
from oreal.spec.status_models import Condition, OREALRunStatus, StepMetrics

API_GROUP = "oreal.io"
API_VERSION = "v1alpha1"
KIND = "OREALRun"
PLURAL = "orealruns"

# CEL rules per model class, keyed by class name; read by oreal.spec.crd.
# Each is (CEL expression over `self`, message). The Python validators enforce the same rules.
CEL_RULES: dict[str, list[tuple[str, str]]] = {}

__all__ = ["Condition", "OREALRunStatus", "StepMetrics"]  # re-exported: the status models live apart

# ---------------------------------------------------------------- model, data, storage


class ModelSpec(SpecModel):
    """The policy to train and where the reference and token-level reward model start from."""

    policy: str = Field(min_length=1, description="Path or bucket URI of the initial policy (HF format).")
    reference: str | None = Field(
        default=None, description="Frozen KL reference (HF format). Default: the initial policy."
    )
    token_reward_model: str | None = Field(
        default=None,
        description="Initial token-level reward model: a folder written by `oreal reward-model fit` "
        "(backbone + reward_head.safetensors), or an HF model with the policy's vocabulary (its head "
        "starts at zero). Default: a copy of the initial policy with a zero-initialised scalar head.",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        default="auto",
        description="Compute dtype of rollout, reference and published policies (trained weights stay "
        "float32): auto is bfloat16 on GPUs and on CPUs with native bf16 (AVX512-BF16/AMX), float32 on "
        "other CPUs.",
    )


class DataSpec(SpecModel):
    """Training prompts: a JSONL or Parquet file (local path or bucket URI) and its field names."""

    prompts: str = Field(min_length=1, description="URI of the prompts file (.jsonl or .parquet).")
    prompt_field: str = Field(default="problem", min_length=1)
    answer_field: str = Field(default="answer", min_length=1)
    id_field: str | None = Field(default=None, description="Stable prompt id field. Default: row index.")
    pass_rate_field: str | None = Field(
        default=None,
        description="Field holding each prompt's pass rate under the initial policy; when set, prompts "
        "are resampled by pass-rate bucket as in the OREAL reference code.",
    )
    prompt_template: str = Field(
        default="{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
        description="Python format string applied to the prompt field, as {problem}.",
    )
    system_prompt: str | None = None
    use_chat_template: bool = Field(
        default=True, description="Wrap the prompt in the tokenizer's chat template."
    )

    @model_validator(mode="after")
    def _template_has_placeholder(self) -> DataSpec:
        if "{problem}" not in self.prompt_template:
            raise ValueError("promptTemplate must contain the placeholder {problem}")
        return self


class SecretRef(SpecModel):
    """A Secret in the run's namespace whose keys become the workers' environment (e.g. AWS_*)."""

    name: str = Field(min_length=1)


class StorageSpec(SpecModel):
    """The trajectory bucket shared by all roles."""

    uri: str | None = Field(
        default=None,
        description="Bucket URI (s3://, gs://, file://, or a path). Default for local runs: ./runs/<name>/.",
    )
    endpoint: str | None = Field(
        default=None, description="S3-compatible endpoint URL (MinIO, SeaweedFS, ...)."
    )
    region: str | None = None
    secret_ref: SecretRef | None = None


# ---------------------------------------------------------------- algorithm


class OptimizerSpec(SpecModel):
    """AdamW with a cosine learning-rate schedule from lr to minLr.

    Betas default to torch's (0.9, 0.999), as in the released OREAL code; weight decay is not
    applied to biases and norm weights (1-D parameters).
    """

    lr: float = Field(gt=0)
    min_lr: float = Field(ge=0)
    weight_decay: float = Field(default=0.01, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)

    @model_validator(mode="after")
    def _min_lr_le_lr(self) -> OptimizerSpec:
        if self.min_lr > self.lr:
            raise ValueError(f"minLr ({self.min_lr}) must be <= lr ({self.lr})")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {list(self.betas)}")
        return self

    def lr_at(self, step: int, start: int, end: int) -> float:
        """Cosine schedule: `lr` at step `start`, `min_lr` at step `end - 1` (clamped outside)."""
        span = max(end - 1 - start, 1)
        frac = min(max((step - start) / span, 0.0), 1.0)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * frac))


CEL_RULES["OptimizerSpec"] = [("self.minLr <= self.lr", "minLr must be <= lr")]


def _policy_optimizer() -> OptimizerSpec:
    return OptimizerSpec(lr=5e-7, min_lr=1e-7)


def _reward_model_optimizer() -> OptimizerSpec:
    return OptimizerSpec(lr=2e-6, min_lr=4e-7)


class AlgorithmSpec(SpecModel):
    """OREAL and its baselines, which run through the same pipeline."""

    name: Literal["oreal", "grpo", "reinforce"] = "oreal"
    variant: Literal["reference", "paper"] = Field(
        default="reference",
        description="reference: the released code's loss weighting; paper: the paper's equations.",
    )
    steps: PositiveInt = Field(
        default=90,
        description="Number of RL steps (rollout batches), warm-up included. The released OREAL configs: "
        "90 steps, the first 10 training only the token-level reward model.",
    )
    warmup_steps: NonNegativeInt = Field(
        default=10,
        description="Steps at the start in which only the token-level reward model learns (its learning "
        "rate rises linearly over them, as in the released code).",
    )
    prompts_per_step: PositiveInt = 64
    samples_per_prompt: Annotated[int, Field(ge=2)] = 16
    keep_per_prompt: Annotated[int, Field(ge=1)] | Literal["all"] = Field(
        default=1,
        description="OREAL keeps this many correct and this many wrong samples per prompt ('all' keeps all). "
        "The released OREAL w/o token reward model config is keepPerPrompt: all, uniformGroups: keep, "
        "tokenWeights: false.",
    )
    advantage: Literal["rloo", "grpo"] | None = Field(
        default=None, description="Advantage estimator. Default: grpo for name=grpo, else rloo."
    )
    uniform_groups: Literal["drop", "keep"] | None = Field(
        default=None,
        description="Groups whose samples are all correct or all wrong: drop them before the update (the "
        "released filter_trajectory=True) or keep them (filter_trajectory=False, the released OREAL "
        "w/o token reward model config, with keepPerPrompt: all); kept, they add no gradient of their "
        "own (zero advantage) but count in the token normalisation and the KL. Default: drop for oreal, "
        "keep for grpo and reinforce.",
    )
    token_weights: bool = Field(
        default=True, description="Weight token losses by the token-level reward model."
    )
    token_weighting: Literal["threshold", "topk"] = Field(
        default="threshold",
        description="How reward-model probabilities q_t (prefix mean) become token weights, as in the "
        "released code: threshold: max(2q-1, 0) on correct and max(1-2q, 0) on wrong samples "
        "(threshold_rescale); topk: per sequence, the topkRatio share of tokens with the highest q "
        "(correct) or 1-q (wrong), min-max rescaled to [0, 1], 0 elsewhere (topk_rescale: needs only "
        "the ranking of tokens, not a calibrated reward model).",
    )
    topk_ratio: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="tokenWeighting: topk: share of each sequence's tokens that get a weight "
        "(the released configs' correct/incorrect_topk_ratio).",
    )
    kl_coef: float = Field(
        default=0.01, ge=0, allow_inf_nan=False, description="beta, the KL(k3) coefficient to the reference."
    )
    negative_coef: float = Field(
        default=0.5, ge=0, allow_inf_nan=False, description="eta, the weight of the negative-sample loss."
    )
    policy_optimizer: OptimizerSpec = Field(default_factory=_policy_optimizer)
    reward_model_optimizer: OptimizerSpec = Field(default_factory=_reward_model_optimizer)
    max_staleness: NonNegativeInt = Field(
        default=0, description="Policy versions rollout may run ahead of training (0 = strictly on-policy)."
    )
    off_policy_correction: Literal["truncate", "clip", "none"] = Field(
        default="truncate",
        description="How the policy-gradient terms of a stale sample (sampled by an older policy version, "
        "maxStaleness > 0) use the importance ratio pi_theta/pi_behaviour of each token: truncate weights "
        "them by min(ratio, importanceCap) (truncated IS, as IMPALA and Yao et al. 2025); clip uses "
        "PPO's clipped ratio (clipRange, dual clip at importanceCap); none ignores the ratio (biased).",
    )
    importance_cap: float = Field(
        default=2.0,
        ge=1,
        le=100,
        description="C, the largest importance ratio a token's policy-gradient term may carry.",
    )
    clip_range: float = Field(
        default=0.2, gt=0, lt=1, description="PPO's epsilon for offPolicyCorrection: clip."
    )
    mismatch_correction: bool = Field(
        default=False,
        description="Also weight on-policy samples by min(pi_trainer/pi_rollout, importanceCap) per token "
        "(truncated IS for the rollout engine's log-prob mismatch).",
    )
    seed: NonNegativeInt = 42

    @model_validator(mode="after")
    def _cross_field(self) -> AlgorithmSpec:
        if isinstance(self.keep_per_prompt, int) and self.keep_per_prompt > self.samples_per_prompt:
            raise ValueError(
                f"keepPerPrompt ({self.keep_per_prompt}) must be <= samplesPerPrompt ({self.samples_per_prompt})"
            )
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"warmupSteps ({self.warmup_steps}) must be < steps ({self.steps}): "
                "otherwise the policy never trains"
            )
        return self

    # ------------------------------------------------------------ settings derived from the fields
    @property
    def advantage_estimator(self) -> Literal["rloo", "grpo"]:
        if self.advantage is not None:
            return self.advantage
        return "grpo" if self.name == "grpo" else "rloo"

    @property
    def uses_reward_model(self) -> bool:
        """OREAL with token weights trains a token-level reward model; the baselines do not."""
        return self.name == "oreal" and self.token_weights

    @property
    def uses_kl(self) -> bool:
        """REINFORCE (the paper's Table 2, first row) has no KL term; OREAL and GRPO have beta*KL."""
        return self.name != "reinforce" and self.kl_coef > 0

    @property
    def policy_warmup_steps(self) -> int:
        """Steps in which only the reward model learns (0 when there is no reward model)."""
        return self.warmup_steps if self.uses_reward_model else 0

    @property
    def keep_per_group(self) -> int | None:
        """Correct and wrong samples kept per group; None keeps all (always for the baselines)."""
        if self.name != "oreal" or self.keep_per_prompt == "all":
            return None
        return int(self.keep_per_prompt)

    @property
    def drop_uniform_groups(self) -> bool:
        """Drop all-correct and all-wrong groups: uniformGroups, by default only for OREAL."""
        if self.uniform_groups is not None:
            return self.uniform_groups == "drop"
        return self.name == "oreal"


CEL_RULES["AlgorithmSpec"] = [
    (
        "!has(self.keepPerPrompt) || type(self.keepPerPrompt) == string || "
        "self.keepPerPrompt <= (has(self.samplesPerPrompt) ? self.samplesPerPrompt : 16)",
        "keepPerPrompt must be <= samplesPerPrompt",
    ),
    (
        "(has(self.warmupSteps) ? self.warmupSteps : 10) < (has(self.steps) ? self.steps : 90)",
        "warmupSteps must be < steps: otherwise the policy never trains",
    ),
]


class SamplingSpec(SpecModel):
    """How rollout samples answers."""

    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=0.9, gt=0, le=1)
    top_k: int = Field(default=-1, ge=-1, description="-1 disables top-k.")
    max_new_tokens: PositiveInt = 4096
    max_prompt_tokens: PositiveInt = 1024


# ---------------------------------------------------------------- roles


class Toleration(SpecModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class ResourceRequirements(SpecModel):
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class PodFields(SpecModel):
    """Where and how a role's pods run; a started run may change these."""

    image: str | None = Field(
        default=None, description="Container image. Default: the operator's worker image."
    )
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    pod_template: PodTemplateOverrides | None = Field(
        default=None,
        description="Changes to the role's pod template (service account, affinity, env, volumes, ...); "
        "see the merge rule in the README.",
    )


class RolloutSpec(PodFields):
    replicas: PositiveInt = 1
    gpus_per_replica: NonNegativeInt = 1
    engine: Literal["vllm", "hf"] = "vllm"
    batch_size: PositiveInt = Field(default=64, description="Prompts per generation batch (hf engine).")
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)


class JudgeSpec(SpecModel):
    """Optional LLM judge (OpenAI-compatible endpoint) consulted when the rules say 'not equal'."""

    endpoint: str = Field(min_length=1)
    model: str = Field(min_length=1)
    timeout_seconds: float = Field(default=30.0, gt=0)


class VerifierSpec(PodFields):
    replicas: PositiveInt = 1
    workers: PositiveInt | None = Field(
        default=None, description="Checker processes per pod. Default: CPU count."
    )
    timeout_seconds: float = Field(default=5.0, gt=0, description="Wall-clock limit of one answer check.")
    judge: JudgeSpec | None = None


class TrainerSpec(PodFields):
    nodes: PositiveInt = 1
    gpus_per_node: NonNegativeInt = 8
    backend: Literal["deepspeed", "torch"] = "deepspeed"
    zero_stage: Annotated[int, Field(ge=0, le=3)] = 3
    micro_batch_size: PositiveInt = 4
    gradient_checkpointing: bool = True
    compile: bool = Field(
        default=False,
        description="torch.compile each decoder layer of policy, reference and reward model, and the "
        "log-softmax kernels (1.3x faster steps on an H100/H200 for a 0.5B model; the first steps pay the "
        "compile time).",
    )


class CheckpointSpec(SpecModel):
    every: PositiveInt = Field(
        default=10,
        description=(
            "Resumable checkpoint (weights, optimiser states, RNG) every N steps; the last step saves "
            "the final policy and reward model weights under final/ in the bucket."
        ),
    )
    keep: PositiveInt = Field(default=3, description="Checkpoints and policy versions kept in the bucket.")


class EvaluationSpec(SpecModel):
    every: NonNegativeInt = Field(default=0, description="Evaluate every N steps; 0 disables.")
    datasets: list[str] = Field(default_factory=list, description="URIs of MATH-500/GSM8K-format files.")

    @model_validator(mode="after")
    def _datasets_when_enabled(self) -> EvaluationSpec:
        if self.every > 0 and not self.datasets:
            raise ValueError("evaluation.every > 0 needs at least one entry in evaluation.datasets")
        return self


CEL_RULES["EvaluationSpec"] = [
    (
        "!has(self.every) || self.every == 0 || (has(self.datasets) && size(self.datasets) > 0)",
        "evaluation.every > 0 needs at least one entry in evaluation.datasets",
    )
]


class MetricsSpec(SpecModel):
    port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=9400, description="Port of every worker's Prometheus /metrics (0 disables)."
    )
    final_scrape_seconds: Annotated[float, Field(ge=0, le=600)] = Field(
        default=0.0,
        description="Seconds a worker that finished its work keeps serving /metrics before it exits, "
        "so that Prometheus scrapes the last step's values: set it to at least the scrape interval. "
        "0 exits at once (the last step's values may then never be scraped).",
    )


class OREALRunSpec(SpecModel):
    model: ModelSpec
    data: DataSpec
    storage: StorageSpec = Field(default_factory=StorageSpec)
    algorithm: AlgorithmSpec = Field(default_factory=AlgorithmSpec)
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    verifier: VerifierSpec = Field(default_factory=VerifierSpec)
    trainer: TrainerSpec = Field(default_factory=TrainerSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    suspend: bool = Field(
        default=False,
        description="As in Jobs: true stops the run's pods and keeps the bucket; false resumes from it.",
    )
    max_restarts: NonNegativeInt = Field(
        default=3,
        description="Gang restarts tolerated before the run fails (one per incident: a failed trainer "
        "restarts all the run's pods once).",
    )
    active_deadline_seconds: PositiveInt | None = None

    @model_validator(mode="after")
    def _cross_field(self) -> OREALRunSpec:
        if self.rollout.replicas > self.algorithm.prompts_per_step:
            raise ValueError(
                f"rollout.replicas ({self.rollout.replicas}) must be <= algorithm.promptsPerStep "
                f"({self.algorithm.prompts_per_step}): each replica needs at least one prompt"
            )
        return self


CEL_RULES["OREALRunSpec"] = [
    (
        "!has(self.rollout) || !has(self.rollout.replicas) || "
        "self.rollout.replicas <= (has(self.algorithm) && has(self.algorithm.promptsPerStep) "
        "? self.algorithm.promptsPerStep : 64)",
        "rollout.replicas must be <= algorithm.promptsPerStep: each replica needs at least one prompt",
    )
]


# ---------------------------------------------------------------- the resource


class ObjectMeta(BaseModel):
    """The parts of metav1.ObjectMeta we read; everything else the API server adds is kept."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class OREALRun(SpecModel):
    api_version: Literal["oreal.io/v1alpha1"] = Field(default="oreal.io/v1alpha1", alias="apiVersion")
    kind: Literal["OREALRun"] = "OREALRun"
    metadata: ObjectMeta
    spec: OREALRunSpec
    status: OREALRunStatus | None = None

    def to_manifest(self) -> dict[str, Any]:
        """The resource as a plain dict with camelCase keys, defaults filled in, no status."""
        return self.model_dump(mode="json", by_alias=True, exclude={"status"}, exclude_none=True)
