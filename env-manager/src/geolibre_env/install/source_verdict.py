"""What the plan makes of its source check: which pages to ask, and what the answers
mean (a fallback taken, a refusal before any download, a warning about weights).

The asking itself is :mod:`geolibre_env.install.source_check`; a dead route becomes the
same sentence the install would have printed seconds later (install_failures),
with the hosts that did answer, so "offline" is never said of a computer that
reached the package index.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from geolibre_env.install.failures import InstallFailure, failure_from_answer
from geolibre_env.install.source_check import SourceAnswer
from geolibre_env.install.sources import IndexSource, package_index
from geolibre_env.install.torch_source import TorchSource, choose_source
from geolibre_env.machine.detect import Machine
from geolibre_env.machine.torch_build import ExistingEnv, choose_build
from geolibre_env.settings import EnvSettings
from geolibre_env.spec import ModelEnvSpec

__all__ = ["SourceVerdict", "judge_answers", "source_targets"]


@dataclass(frozen=True)
class SourceVerdict:
    source: TorchSource  # after a fallback, if one was taken
    failures: tuple[InstallFailure, ...] = ()  # block the install
    warnings: tuple[str, ...] = ()


def source_targets(
    machine: Machine,
    spec: ModelEnvSpec,
    settings: EnvSettings,
    *,
    existing: ExistingEnv | None = None,
    build: str | None = None,
) -> list[tuple[str, str]]:
    """``(role, url)`` of every page the check asks for: the package index's page of the
    first requirement, the torch source's (and its fallback's) torch page, and the
    Hub's listing of the weights repository."""
    choice = choose_build(machine, spec, existing=existing, forced=build)
    source = choose_source(choice.build, machine, spec, settings, forced=build is not None)
    first = spec.requirements[0] if spec.requirements else ""
    project = re.split(r"[\[=<>~!; ]", first, maxsplit=1)[0]
    index = package_index(settings)[0].rstrip("/")
    targets = [("packages", f"{index}/{project}/"), ("torch", _torch_page(source.url))]
    if source.fallback is not None:
        targets.append(("torch-fallback", _torch_page(source.fallback.url)))
    weights = spec.weights
    hub = f"{settings.hub_endpoint}/api/models/{weights.repo}/revision/{weights.revision}"
    targets.append(("weights", hub))
    return targets


def _torch_page(url: str) -> str:
    return f"{url.rstrip('/')}/torch/"


def judge_answers(
    source: TorchSource, answers: tuple[SourceAnswer, ...], settings: EnvSettings
) -> SourceVerdict:
    """The torch source after the check, what blocks the install, and what to warn of."""
    by_role = {a.role: a for a in answers}
    answered = tuple(dict.fromkeys(a.host for a in answers if a.answered))
    index = IndexSource(settings)
    failures: list[InstallFailure] = []
    warnings: list[str] = []

    def failed(answer: SourceAnswer, step: str, url: str) -> None:
        context = dataclasses.replace(
            index.failure_context(step, url),  # type: ignore[arg-type]
            answered=answered,
        )
        failure = failure_from_answer(answer, context)
        if answer.kind == "timeout":  # slow is not dead: the install may still get through
            warnings.append(f"{failure.summary} The install will try it anyway.")
        elif failure not in failures:  # torch and packages on one host fail alike
            failures.append(failure)

    torch = by_role.get("torch")
    fallback = by_role.get("torch-fallback")
    if torch is not None and not torch.answered:
        if source.fallback is not None and fallback is not None and fallback.answered:
            fallback_why = source.fallback.why
            warnings.append(f"{source.where} did not answer: {torch.failure}. {fallback_why}")
            source = source.fallback
        else:
            failed(torch, "torch", source.url)
    packages = by_role.get("packages")
    if packages is not None and not packages.answered:
        failed(packages, "packages", source.url)
    weights = by_role.get("weights")
    if weights is not None and not weights.answered:
        warnings.append(
            f"The Hub ({weights.host}) did not answer: {weights.failure}. The environment "
            f"can be built, but the SAM 3 weights cannot be downloaded from here; put them "
            f"in place later (`geolibre-ml install` again, or an offline bundle)."
        )
    return SourceVerdict(source, tuple(failures), tuple(warnings))
