"""The consortium policy as frozen, validated objects.

A policy is reviewed data (``policies/consortium.yaml``), parsed once at the edge into these
objects; nothing deeper reads raw dictionaries. Unknown keys are errors, so a typo cannot
silently fall back to a default. Numbers are strict (``yes`` is not 1, ``1.5`` is not an
integer) and finite (``.inf`` and ``.nan`` are refused), because every value here ends up in a
privacy mechanism or in the masked arithmetic of secure aggregation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from policies.identity import check_site_id

#: The four hospitals of the embedded example.
DEFAULT_SITES = ("cleveland", "hungary", "long_beach", "switzerland")
#: Most rounds a policy (and any override of it) may plan.
MAX_ROUNDS = 10_000
#: Masked values are int64 sums: the modulus must leave room for the sum of every site's values.
MAX_MODULUS = 2**48


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class DPPolicy(_Frozen):
    """DP-SGD mechanism every site runs in every round.

    Exactly one of ``noise_multiplier`` and ``target_epsilon`` is given. With
    ``target_epsilon``, the noise multiplier is derived (by the policy's accountant) so that the
    planned rounds spend at most that ε at the policy's δ.
    """

    noise_multiplier: StrictFloat | StrictInt | None = Field(
        None, gt=0, le=1000, description="Noise std / clipping norm.")
    target_epsilon: StrictFloat | StrictInt | None = Field(
        None, gt=0, le=1000,
        description="Derive the noise multiplier so the planned run spends this ε.")
    max_grad_norm: StrictFloat | StrictInt = Field(
        gt=0, le=1e6, description="Per-sample gradient clipping norm.")
    sample_rate: StrictFloat | StrictInt = Field(
        gt=0, le=1, description="Poisson sampling rate per step; 1/sample_rate must be whole.")
    local_epochs: StrictInt | None = Field(
        None, ge=1, le=100,
        description="Local passes over the data per round (steps = epochs / sample_rate).")
    local_steps: StrictInt | None = Field(
        None, ge=1, le=100_000, description="Noisy steps per round (instead of local_epochs).")
    learning_rate: StrictFloat | StrictInt = Field(
        gt=0, le=100, description="Local SGD learning rate.")
    accountant: Literal["rdp", "prv"] = Field("rdp", description="Opacus privacy accountant.")

    @field_validator("sample_rate")
    @classmethod
    def _whole_batches(cls, value: float) -> float:
        batches = 1.0 / value
        if abs(batches - round(batches)) > 1e-9:
            raise ValueError(
                f"1/sample_rate must be a whole number of batches per epoch (got {batches:.4g})"
            )
        return value

    @model_validator(mode="after")
    def _one_noise_source(self) -> DPPolicy:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        if (self.local_epochs is None) == (self.local_steps is None):
            raise ValueError("give exactly one of local_epochs and local_steps")
        return self

    @property
    def steps_per_round(self) -> int:
        """Noisy steps a site takes per round."""
        if self.local_steps is not None:
            return self.local_steps
        assert self.local_epochs is not None  # the validator guarantees one of them
        return round(self.local_epochs / self.sample_rate)


class SecAggPolicy(_Frozen):
    """Parameters of Flower's SecAgg+ protocol.

    An integer ``num_shares`` must be odd: Flower crashes every client on an even integer
    smaller than the number of sampled sites, so an even one never reaches Flower. The masked
    arithmetic must not overflow: with N member sites, N × quantization_range must stay below
    modulus_range (checked by :class:`ConsortiumPolicy`, which knows N).
    """

    num_shares: StrictInt | StrictFloat = Field(
        description="Shares per secret: odd int >= 3, or a fraction.")
    reconstruction_threshold: StrictInt | StrictFloat = Field(
        description="Shares needed to reconstruct.")
    timeout_s: StrictFloat | StrictInt = Field(
        gt=0, le=3600, description="Seconds to wait for each stage.")
    max_weight: StrictFloat | StrictInt = Field(
        1000.0, ge=1, le=1e9, description="Must be >= the largest site's examples.")
    clipping_range: StrictFloat | StrictInt = Field(
        8.0, gt=0, le=1e6, description="Masked values are clipped to ±this.")
    quantization_range: StrictInt = Field(2**22, ge=2, description="Quantization levels.")
    modulus_range: StrictInt = Field(
        2**32, ge=4, le=MAX_MODULUS, description="Modulus of the masked arithmetic (a power of 2).")

    @field_validator("num_shares")
    @classmethod
    def _odd_shares(cls, value: int | float) -> int | float:
        if isinstance(value, int):
            if value < 3:
                raise ValueError(f"an integer num_shares must be >= 3 (got {value})")
            if value % 2 == 0:
                raise ValueError(
                    f"an integer num_shares must be odd (got {value}); Flower's SecAgg+ "
                    "crashes every client on an even value"
                )
        elif not 0 < value <= 1:
            raise ValueError(f"a fractional num_shares must be in (0, 1] (got {value})")
        return value

    @model_validator(mode="after")
    def _threshold_fits(self) -> SecAggPolicy:
        t, n = self.reconstruction_threshold, self.num_shares
        if isinstance(t, int):
            if t < 2:
                raise ValueError(f"reconstruction_threshold must be >= 2 (got {t})")
            if isinstance(n, int) and t >= n:
                raise ValueError(
                    f"reconstruction_threshold ({t}) must be less than num_shares ({n})"
                )
        elif not 0 < t <= 1:
            raise ValueError(f"a fractional reconstruction_threshold must be in (0, 1] (got {t})")
        if self.modulus_range & (self.modulus_range - 1):
            raise ValueError(f"modulus_range must be a power of 2 (got {self.modulus_range})")
        return self

    def check_capacity(self, num_sites: int) -> None:
        """Raise ``ValueError`` if the masked sum of ``num_sites`` updates could overflow."""
        if num_sites * self.quantization_range >= self.modulus_range:
            raise ValueError(
                f"secagg: {num_sites} sites × quantization_range {self.quantization_range} "
                f"must stay below modulus_range {self.modulus_range} (the masked sum would wrap "
                "around and corrupt the model)"
            )


class ConvergencePolicy(_Frozen):
    """When the consortium stops early (besides the rounds and the ε ceiling)."""

    target_accuracy: StrictFloat | StrictInt | None = Field(
        None, gt=0, le=1, description="Stop once the mean site accuracy reaches this."
    )
    patience: StrictInt | None = Field(
        None, ge=1, description="Stop after this many rounds without improvement."
    )
    min_delta: StrictFloat | StrictInt = Field(
        0.0, ge=0, le=1, description="Improvement smaller than this is none.")


class _Terms(_Frozen):
    """The privacy terms every consortium policy states: δ, the ε ceilings, the members."""

    version: Literal[1] = 1
    delta: StrictFloat = Field(gt=0, lt=1, description="δ at which every ε is stated.")
    epsilon_ceiling: StrictFloat | StrictInt = Field(
        gt=0, le=1000, description="No site's ε may pass this in a run.")
    lifetime_epsilon_ceiling: StrictFloat | StrictInt = Field(
        10.0, gt=0, le=1000,
        description="No site's lifetime ε (all its runs, composed) may pass this.",
    )
    min_sites: StrictInt = Field(ge=2, description="Sites that must train in each round.")
    sites: tuple[str, ...] = Field(DEFAULT_SITES, min_length=2, description="Member site ids.")
    convergence: ConvergencePolicy = Field(default_factory=ConvergencePolicy)

    @field_validator("sites")
    @classmethod
    def _valid_sites(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for i, site in enumerate(value):
            check_site_id(site, what=f"sites[{i}]")
        if len(set(value)) != len(value):
            raise ValueError("site ids must be unique")
        return value

    def _check_terms(self) -> None:
        if self.min_sites > len(self.sites):
            raise ValueError(
                f"min_sites ({self.min_sites}) exceeds the number of member sites "
                f"({len(self.sites)}): lower min_sites to at most {len(self.sites)}"
            )
        if self.epsilon_ceiling > self.lifetime_epsilon_ceiling:
            raise ValueError(
                f"epsilon_ceiling ({self.epsilon_ceiling}) exceeds lifetime_epsilon_ceiling "
                f"({self.lifetime_epsilon_ceiling})"
            )


class PrivacyTerms(_Terms):
    """A policy that states only the privacy terms (and, optionally, the rounds and SecAgg+):
    the consortium chooses the training settings for the task, the sites' sizes and the budget
    (:mod:`policies.choice`)."""

    rounds: StrictInt | None = Field(
        None, ge=1, le=MAX_ROUNDS, description="Rounds per run (chosen when absent).")
    secagg: SecAggPolicy | None = Field(None, description="SecAgg+ (chosen when absent).")

    @model_validator(mode="after")
    def _consistent(self) -> PrivacyTerms:
        self._check_terms()
        return self


class ConsortiumPolicy(_Terms):
    """The consortium's privacy and training rules for a run."""

    rounds: StrictInt = Field(ge=1, le=MAX_ROUNDS, description="Rounds per run.")
    dp: DPPolicy
    secagg: SecAggPolicy

    @model_validator(mode="after")
    def _consistent(self) -> ConsortiumPolicy:
        self._check_terms()
        shares = self.secagg.num_shares
        if isinstance(shares, int) and shares > self.min_sites:
            largest_odd = self.min_sites - (1 - self.min_sites % 2)
            whole = (f" or an odd whole number from 3 to {largest_odd}"
                     if largest_odd >= 3 else "")
            raise ValueError(
                f"secagg.num_shares ({shares}) exceeds min_sites ({self.min_sites}): give it as "
                f"a fraction of the sampled sites (e.g. num_shares: 1.0){whole}"
            )
        self.secagg.check_capacity(len(self.sites))
        if self.dp.target_epsilon is not None and self.dp.target_epsilon > self.epsilon_ceiling:
            raise ValueError(
                f"dp.target_epsilon ({self.dp.target_epsilon}) exceeds epsilon_ceiling "
                f"({self.epsilon_ceiling})"
            )
        return self
