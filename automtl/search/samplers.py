"""optuna samplers for architecture search: AutoFormer evolution and NSGA-II on candidates.

Candidates may change length (a deeper net has more genes), which optuna's fixed
distributions do not model. So the sampler builds the whole candidate itself (random /
mutation / crossover, in budget, not seen before) and stores it in the trial's system attrs,
with its genes as params (``suggest_categorical`` returns exactly them).

Two ways in. ``create_trial`` (what :class:`~automtl.search.EvolutionSearch` uses) creates
the trial with its candidate, genes and attributes in one storage write, then re-reads the
study: a trial numbered after another live trial holding the same key gives way (PRUNED,
``DUPLICATE``) and draws again; trial numbers follow creation order, so the later of two
such trials always sees the earlier. Under plain ``study.ask``/``optimize``, ``before_trial``
writes the key into the created trial, then re-reads the study and draws again if any other
live trial holds it. Either way no architecture is evaluated twice.
"""
from __future__ import annotations

import datetime as _dt
import os
import random
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseGASampler, NSGAIISampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from automtl.errors import SearchError
from automtl.search.proposer import Proposer
from automtl.search.settings import EvolutionSettings
from automtl.search.storage import created_without_rival
from automtl.spaces.base import Candidate, SearchSpace

if TYPE_CHECKING:
    from optuna.study import Study

    # the mixin below is only ever combined with an optuna GA sampler, whose members it uses
    _GASamplerMixinBase = BaseGASampler
else:
    _GASamplerMixinBase = object

#: system-attr keys written on every trial
CANDIDATE = "automtl:candidate"
KEY = "automtl:key"
ORIGIN = "automtl:origin"
WORKER = "automtl:worker"
INTERRUPTED = "automtl:interrupted"
REJECTED = "automtl:rejected"
#: set on a trial given up (PRUNED, never evaluated) because an earlier trial holds its candidate
DUPLICATE = "automtl:duplicate"
#: candidates drawn for one trial before concluding other workers take every one
MAX_CLAIMS = 20
#: with ``record_params=None`` genes become optuna params only for spaces with at most this many
MAX_AUTO_PARAMS = 64


def worker_id() -> str:
    """``host:pid`` of this process (recorded on each trial to find orphans after a crash)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_live(trial: FrozenTrial) -> bool:
    """Whether ``trial`` holds its key: every trial except those a dead worker left behind
    and those given up as duplicates."""
    attrs = trial.system_attrs
    return KEY in attrs and not attrs.get(INTERRUPTED, False) and not attrs.get(DUPLICATE, False)


def next_generation(trials: Sequence[FrozenTrial], gen_key: str, population: int) -> int:
    """The generation a new trial joins (optuna's ``BaseGASampler.get_trial_generation`` rule):
    the latest generation of the completed trials, or the next one once it is full."""
    gens = [t.system_attrs.get(gen_key, -1) for t in trials if t.state == TrialState.COMPLETE]
    latest = max(gens, default=0)
    if latest < 0:
        return 0
    return latest if gens.count(latest) < population else latest + 1


def _exhausted() -> SearchError:
    return SearchError(f"{MAX_CLAIMS} candidates in a row were taken by other workers at the "
                       "same moment; the space is nearly exhausted")


class _CandidateAssigner:
    """Shared by both samplers: gives a trial an in-budget candidate no other trial holds."""

    def __init__(self, space: SearchSpace, settings: EvolutionSettings, seed: int | None) -> None:
        self.space = space
        self.proposer = Proposer(space, settings)
        self.rng = random.Random(seed)
        self._assigned: dict[int, Candidate] = {}
        self._distributions = {name: CategoricalDistribution(list(choices))
                               for name, choices in space.gene_choices().items()}
        record_params = settings.record_params
        if record_params is None:  # one storage write per gene: worth it for small spaces
            record_params = 0 < len(self._distributions) <= MAX_AUTO_PARAMS
        self.record_params = bool(record_params)

    def draw(self, trials: Sequence[FrozenTrial], *, number: int, generation: int,
             parents: Sequence[FrozenTrial], gen_key: str,
             exclude_id: int | None = None) -> Iterator[tuple[str, Candidate, str]]:
        """Candidates for the trial numbered ``number``, as ``(key, candidate, origin)``:
        first the candidates of interrupted trials nobody holds, then proposals from
        ``parents``; none is held by a live trial of ``trials`` or drawn before."""
        # one pass over the study (it runs once per trial; a study holds thousands)
        taken, interrupted, slot = set(), [], 0
        for t in trials:
            attrs = t.system_attrs
            if is_live(t):
                if t._trial_id != exclude_id:
                    taken.add(attrs[KEY])
                if t.number < number and attrs.get(gen_key) == generation:
                    slot += 1
            elif attrs.get(INTERRUPTED) and CANDIDATE in attrs:
                interrupted.append((attrs[KEY], attrs[CANDIDATE]))
        orphans = [(k, c) for k, c in interrupted if k not in taken]
        parent_cands = [p.system_attrs[CANDIDATE] for p in parents if CANDIDATE in p.system_attrs]
        while True:
            if orphans:
                key, cand = orphans.pop(0)
                origin = "retry"
            else:
                cand, origin = self.proposer.propose(parent_cands, slot, self.rng,
                                                     taken.__contains__)
                key = self.space.key(cand)
            taken.add(key)
            yield key, cand, origin

    def assign(self, study: Study, trial: FrozenTrial, generation: int,
               parents: Sequence[FrozenTrial], gen_key: str) -> Candidate:
        """Choose, record and return the candidate of ``trial``, a trial optuna created
        (``study.ask`` / ``study.optimize``): one storage write per attribute."""
        storage, tid = study._storage, trial._trial_id
        storage.set_trial_system_attr(tid, WORKER, worker_id())
        # the study's per-ask cache, fresh since this trial was created (saves a storage read)
        trials = study._get_trials(deepcopy=False, use_cache=True)
        rejected_before = self.proposer.n_rejected
        draws = self.draw(trials, number=trial.number, generation=generation, parents=parents,
                          gen_key=gen_key, exclude_id=tid)
        for _, (key, cand, origin) in zip(range(MAX_CLAIMS), draws):  # noqa: B007 (used after)
            storage.set_trial_system_attr(tid, KEY, key)
            now = storage.get_all_trials(study._study_id, deepcopy=False)
            if not any(t._trial_id != tid and is_live(t) and t.system_attrs[KEY] == key
                       for t in now):
                break
        else:
            raise _exhausted()
        storage.set_trial_system_attr(tid, CANDIDATE, cand)
        storage.set_trial_system_attr(tid, ORIGIN, origin)
        rejected = self.proposer.n_rejected - rejected_before
        if rejected:  # out-of-budget draws resampled for this trial (one write only when any)
            storage.set_trial_system_attr(tid, REJECTED, rejected)
        self._assigned[tid] = cand
        return cand

    def template(self, key: str, cand: Candidate, origin: str, *, generation: int, gen_key: str,
                 rejected: int) -> FrozenTrial:
        """A RUNNING trial holding ``cand`` (system attrs, and the genes as params when
        recorded), for ``storage.create_new_trial(..., template_trial=)``."""
        system: dict[str, Any] = {gen_key: generation, WORKER: worker_id(), KEY: key,
                                  CANDIDATE: cand, ORIGIN: origin}
        if rejected:
            system[REJECTED] = rejected
        dists = self.search_space()
        params = {g: v for g, v in cand.items() if g in dists}
        return FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, values=None,
                           datetime_start=_dt.datetime.now(), datetime_complete=None,
                           params=params, distributions={g: dists[g] for g in params},
                           user_attrs={}, system_attrs=system, intermediate_values={},
                           trial_id=-1)

    def candidate_of(self, study: Study, trial: FrozenTrial) -> Candidate:
        """The candidate ``assign`` gave ``trial`` (from memory, else from the storage)."""
        tid = trial._trial_id
        if tid not in self._assigned:
            attrs = study._storage.get_trial_system_attrs(tid)
            if CANDIDATE not in attrs:
                raise SearchError(f"trial {trial.number} has no candidate; it was not created "
                                  "by an automtl search sampler")
            self._assigned[tid] = attrs[CANDIDATE]
        return self._assigned[tid]

    def forget(self, trial_id: int) -> None:
        """Drop the in-memory copy of a finished trial's candidate."""
        self._assigned.pop(trial_id, None)

    def search_space(self) -> dict[str, BaseDistribution]:
        """The genes as categorical distributions (empty when params are not recorded)."""
        return dict(self._distributions) if self.record_params else {}

    def relative_params(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """The candidate's genes that optuna should report as params."""
        cand = self.candidate_of(study, trial)
        return {k: v for k, v in cand.items() if k in search_space}


class _ParentMemo:
    """Parents of a generation never change once chosen (optuna stores them in the study);
    keeping them in memory saves a storage read of the study attributes per trial."""

    def __init__(self) -> None:
        self.memo: dict[tuple[int, int, int], list[FrozenTrial]] = {}

    def get(self, study: Study, generation: int, compute: Any) -> list[FrozenTrial]:
        key = (id(study._storage), study._study_id, generation)
        hit = self.memo.get(key)
        if hit is None:
            # trial order, as optuna returns parents read back from the study (so a resumed
            # or second worker draws from the same list as the one that chose them)
            hit = sorted(compute(study, generation), key=lambda t: t.number)
            if generation > 0 and hit:
                self.memo[key] = hit
        return hit


def _value_of(trial: FrozenTrial, direction: StudyDirection) -> float:
    v = trial.value
    if v is None:
        raise SearchError(f"trial {trial.number} has no objective value")
    return v if direction == StudyDirection.MAXIMIZE else -v


class _AssignedCandidates(_GASamplerMixinBase):
    """What both evolution samplers share: each trial's candidate is decided in
    ``before_trial`` by a :class:`_CandidateAssigner`; optuna's parameter hooks read it back."""

    settings: EvolutionSettings
    assigner: _CandidateAssigner
    _parents: _ParentMemo
    _fallback: RandomSampler

    def _init_assigner(self, space: SearchSpace, settings: EvolutionSettings,
                       seed: int | None) -> None:
        self.space = space
        self.settings = settings
        self.assigner = _CandidateAssigner(space, settings, seed)
        self._fallback = RandomSampler(seed=seed)
        self._parents = _ParentMemo()

    def candidate(self, study: Study, trial: FrozenTrial | Any) -> Candidate:
        """The candidate of ``trial`` (an optuna ``Trial`` or ``FrozenTrial``)."""
        return self.assigner.candidate_of(study, trial)

    def create_trial(self, study: Study, trials: Sequence[FrozenTrial], *,
                     annotate: Callable[[FrozenTrial, Candidate], None] | None = None
                     ) -> tuple[FrozenTrial, Candidate]:
        """Create a RUNNING trial holding a fresh candidate in one storage write (its
        generation, candidate, key and genes, plus what ``annotate`` adds to the template),
        instead of one write per attribute as ``study.ask`` does.

        ``trials`` is a recent read of the study. Duplicates across workers: the trial holds
        its key from its creation and trial numbers follow creation order, so the later of two
        trials holding one key sees the earlier in its re-read of the study and gives up
        (PRUNED, ``DUPLICATE`` set, never evaluated); the candidate is then drawn again. On our
        RDB storage one query for earlier holders of the key replaces the re-read when there
        are none (the common case).

        Returns the created trial (as read back) and its candidate.
        """
        storage, sid = study._storage, study._study_id
        gen_key = self._get_generation_key()
        assert self.population_size is not None
        for _ in range(MAX_CLAIMS):
            generation = next_generation(trials, gen_key, self.population_size)
            parents = self.get_parent_population(study, generation)
            number = trials[-1].number + 1 if trials else 0  # the slot; the storage decides
            rejected_before = self.assigner.proposer.n_rejected
            key, cand, origin = next(self.assigner.draw(
                trials, number=number, generation=generation, parents=parents, gen_key=gen_key))
            template = self.assigner.template(
                key, cand, origin, generation=generation, gen_key=gen_key,
                rejected=self.assigner.proposer.n_rejected - rejected_before)
            if annotate is not None:
                annotate(template, cand)
            tid = storage.create_new_trial(sid, template_trial=template)
            # draw() excluded the keys of the live trials read, so only newer ones can rival
            seen = max((t._trial_id for t in trials), default=-1)
            mine = created_without_rival(storage, sid, tid, KEY, key, seen)  # one RDB query
            if mine is not None:
                self.assigner._assigned[tid] = cand
                return mine, cand
            trials = storage.get_all_trials(sid, deepcopy=False)
            mine = next(t for t in reversed(trials) if t._trial_id == tid)
            if not any(t.system_attrs.get(KEY) == key and t.number < mine.number and is_live(t)
                       for t in trials):
                self.assigner._assigned[tid] = cand
                return mine, cand
            storage.set_trial_system_attr(tid, DUPLICATE, True)
            storage.set_trial_state_values(tid, TrialState.PRUNED)
            trials = storage.get_all_trials(sid, deepcopy=False)
        raise _exhausted()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return self.assigner.search_space()

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self.assigner.relative_params(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        cand = self.assigner.candidate_of(study, trial)
        if param_name in cand:
            return cand[param_name]
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def get_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        """The completed trials of ``generation``, read from the storage (not from the study's
        per-ask cache, which ``create_trial`` does not refresh)."""
        gen_key = self._get_generation_key()
        done = study._storage.get_all_trials(study._study_id, deepcopy=False,
                                             states=(TrialState.COMPLETE,))
        return [t for t in done if t.system_attrs.get(gen_key) == generation]

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        super().after_trial(study, trial, state, values)
        self.assigner.forget(trial._trial_id)


class EvolutionSampler(_AssignedCandidates, BaseGASampler):
    """AutoFormer/ViT-MVT evolution under a parameter budget (single objective).

    Generation 0 draws ``population`` random in-budget candidates. Each later generation's
    parents are the ``top_k`` best of the previous generation and its parents (elitism); its
    children are ``n_mutations`` mutations (per-layer gene prob ``p_layer``, depth/width
    ``p_global``) and ``n_crossovers`` crossovers of same-depth parents. Children outside the
    budget or already seen are resampled.

    Example::

        import optuna
        from automtl.search import EvolutionSampler, EvolutionSettings
        from automtl.spaces import LayeredToySpace
        space = LayeredToySpace()
        settings = EvolutionSettings(budget=(20_000, 40_000), population=10, top_k=3,
                                     n_mutations=5, n_crossovers=5)
        sampler = EvolutionSampler(space, settings, seed=0)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        def objective(trial):
            cand = sampler.candidate(study, trial)
            return sum(space.scores(cand).values())
        study.optimize(objective, n_trials=30)

    Args:
        space: the search space.
        settings: the :class:`EvolutionSettings` (budget, population, top_k, operators;
            ``record_params`` also reports the genes as optuna params for the dashboard and
            ``trials_dataframe``, one storage write per gene, by default only for spaces with
            at most ``MAX_AUTO_PARAMS`` genes; the candidate is always in the ``candidate``
            user attr), or a mapping of them.
        seed: seeds the proposal RNG.
    """

    def __init__(self, space: SearchSpace, settings: EvolutionSettings | Mapping[str, Any], *,
                 seed: int | None = None) -> None:
        settings = EvolutionSettings.parse(settings)
        super().__init__(population_size=settings.population)
        self._init_assigner(space, settings, seed)

    def get_parent_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        """The parents of ``generation`` (chosen once, shared through the study, memoised)."""
        return self._parents.get(study, generation, super().get_parent_population)

    def select_parent(self, study: Study, generation: int) -> list[FrozenTrial]:
        """The ``top_k`` best of generation ``generation - 1`` and its own parents."""
        pool = {t._trial_id: t for t in self.get_population(study, generation - 1)}
        for t in self.get_parent_population(study, generation - 1):
            pool.setdefault(t._trial_id, t)
        direction = study.direction
        ranked = sorted(pool.values(), key=lambda t: (-_value_of(t, direction), t.number))
        return ranked[: self.settings.top_k]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Give the new trial its candidate (unless ``create_trial`` made it with one)."""
        if KEY in trial.system_attrs:
            return
        generation = self.get_trial_generation(study, trial)
        parents = self.get_parent_population(study, generation)
        self.assigner.assign(study, trial, generation, parents, self._get_generation_key())


class ParetoEvolutionSampler(_AssignedCandidates, NSGAIISampler):
    """NSGA-II (optuna's non-dominated sorting + crowding-distance survivor selection) whose
    children are the space's own mutations and crossovers, in budget and never duplicated.

    Used for the multi-objective mode: one objective per task plus the parameter count.
    Takes the same arguments as :class:`EvolutionSampler`; ``top_k`` is unused because NSGA-II
    keeps ``population`` survivors.
    """

    def __init__(self, space: SearchSpace, settings: EvolutionSettings | Mapping[str, Any], *,
                 seed: int | None = None) -> None:
        settings = EvolutionSettings.parse(settings)
        super().__init__(population_size=settings.population, seed=seed)
        self._init_assigner(space, settings, seed)

    def get_parent_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        """The NSGA-II survivors that parent ``generation`` (memoised, see EvolutionSampler)."""
        return self._parents.get(study, generation, super().get_parent_population)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """Give the new trial its candidate (children of the NSGA-II survivors)."""
        super().before_trial(study, trial)
        if KEY in trial.system_attrs:
            return
        generation = self.get_trial_generation(study, trial)
        parents = self.get_parent_population(study, generation)
        self.assigner.assign(study, trial, generation, parents, self._get_generation_key())


class RandomCandidateSampler(EvolutionSampler):
    """Random search under the same budget and duplicate rules (the baseline of benchmarks):
    every trial is a fresh random in-budget candidate, whatever the generation."""

    def select_parent(self, study: Study, generation: int) -> list[FrozenTrial]:
        return []
