"""The one evolution-settings object: typed errors at ``search.<key>``, passed whole."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from automtl.__main__ import main
from automtl.config import load_config
from automtl.errors import ConfigError
from automtl.search import EvolutionSampler, EvolutionSearch, EvolutionSettings, ToyEvaluator
from automtl.search.config import build_job

SEARCH = dict(budget=(20_000, 40_000), generations=1, population=4, top_k=2, n_mutations=2,
              n_crossovers=2)


def _config(tmp_path, top: str = "", **search):
    """A config file of the toy search with ``search`` settings changed and ``top`` added."""
    path = tmp_path / "cfg.py"
    path.write_text('space = dict(type="toy_layered")\nevaluator = dict(type="toy")\n'
                    f"search = {dict(SEARCH, **search)!r}\n{top}")
    return path


@pytest.mark.parametrize("setting,key,expected", [
    (dict(population="20"), "search.population", "valid integer"),
    (dict(generations=2.5), "search.generations", "valid integer"),
    (dict(top_k=9), "search.top_k", r"must not exceed population \(4\)"),
    (dict(budget=30000), "search.budget", r"min_params, max_params.*\(got 30000\)"),
    (dict(budget=(5, 4)), "search.budget", "window is empty"),
    (dict(p_layer=1.5), "search.p_layer", "less than or equal to 1"),
    (dict(mode="annealing"), "search.mode", "'evolution', 'pareto' or 'random'"),
    (dict(record_params="yes"), "search.record_params", "valid boolean"),
    (dict(populaton=3), "search.populaton", "unknown setting"),
])
def test_bad_setting_in_a_config_file_names_file_and_key(tmp_path, setting, key, expected):
    path = _config(tmp_path, **setting)
    with pytest.raises(ConfigError, match=expected) as info:
        build_job(load_config(path), config_path=str(path), work_dir=str(tmp_path / "w"))
    assert info.value.key == key and info.value.path == str(path)
    assert key in str(info.value) and str(path) in str(info.value)


def test_unknown_top_level_key_is_refused(tmp_path):
    path = _config(tmp_path, top="serach = dict(population=3)\n")
    with pytest.raises(ConfigError, match="unknown top-level key") as info:
        build_job(load_config(path), config_path=str(path), work_dir=str(tmp_path / "w"))
    assert info.value.key == "serach"
    with pytest.raises(ConfigError, match="must be bool"):
        build_job(load_config(_config(tmp_path, top="tensorboard = 'yes'\n")),
                  work_dir=str(tmp_path / "w"))


def test_cli_reports_a_bad_override_with_its_key(tmp_path, capsys):
    code = main(["search", str(_config(tmp_path)), "--work-dir", str(tmp_path / "w"),
                 "--no-progress", "--cfg-options", "search.population='20'"])
    err = capsys.readouterr().err
    assert code == 1 and "ConfigError" in err and "search.population" in err
    assert not (tmp_path / "w").exists()  # a bad config creates (and locks) no work dir


def test_settings_passed_whole_and_replaced(toy):
    settings = EvolutionSettings(budget=(20_000, 40_000), population=6, top_k=2, n_mutations=3,
                                 n_crossovers=3, max_random_tries=77)
    sampler = EvolutionSampler(toy, settings, seed=0)
    assert sampler.settings is settings and sampler.assigner.proposer.settings is settings
    assert sampler.population_size == 6 and sampler.assigner.proposer.budget == (20_000, 40_000)
    assert settings.replace(mode="random").mode == "random" and settings.mode == "evolution"
    assert settings.target_trials() == 6 * 20 and settings.target_trials(2) == 12
    with pytest.raises(ValidationError):
        settings.replace(top_k=7)
    with pytest.raises(ValidationError):
        settings.population = 3  # frozen: one object, shared, never changed under a sampler


def test_search_settings_from_a_mapping_and_described(make_search, tmp_path):
    s = make_search(work_dir=tmp_path, generations=1)
    assert isinstance(s.settings, EvolutionSettings) and s.settings.generations == 1
    s.run()
    assert s.study.trials and len(s.study.trials) == 10
    desc = s.describe()
    assert desc["budget"] == [20_000, 40_000] and desc["population"] == 10
    assert desc["space"] == s.space.name and desc["tasks"] == list(s.tasks)
    with pytest.raises(ConfigError, match="search.populaton"):
        EvolutionSearch(s.space, ToyEvaluator(s.space), dict(budget=(20_000, 40_000), populaton=3),
                        storage="memory", progress=False)


@pytest.mark.parametrize("top,key,expected", [
    ("seed = 'zero'", "seed", "must be int"),
    ("seed = 1.5", "seed", "must be int"),
    ("seed = True", "seed", "must be int"),
    ("seed = -1", "seed", r"integer in 0\.\.4294967295"),
    ("seed = 2**32", "seed", r"integer in 0\.\.4294967295"),
    ("storage = 5", "storage", "must be str"),
    ("storage = ['sqlite:///x.db']", "storage", "must be str"),
    ("study = 3", "study", "must be str"),
    ("work_dir = 7", "work_dir", "must be str"),
    ("space = dict(type='toy_layered', depths=(-1, 2))", "space.depths", "integer in 1..256"),
    ("space = dict(type='toy_layered', embeds=(16, -24))", "space.embeds", "integer >= 1"),
    ("space = dict(type='toy_layered', ratios=(0,))", "space.ratios", "integer >= 1"),
    ("evaluator = dict(type='toy', delay=-1)", "evaluator.delay", "seconds >= 0"),
    ("fitness = dict(type='weighted_sum', weights='cls')", "fitness.weights", "dict of task"),
    ("fitness = dict(type='weighted_sum', weights=dict(cls='1'))", "fitness.weights.cls",
     "finite number"),
    ("fitness = dict(type='weighted_sum', weights=dict(cls=1, depth=1))",
     "fitness.weights.depth", "not one the evaluator reports"),
    ("fitness = dict(type='delta_m', baselines=dict(cls=0.5), lower_is_better='no')",
     "fitness.lower_is_better", "True/False"),
    ("fitness = dict(type='delta_m', baselines=dict(cls=0))", "fitness.baselines.cls",
     "non-zero"),
])
def test_bad_top_level_value_names_its_key(tmp_path, top, key, expected):
    path = _config(tmp_path, top=top + "\n")
    with pytest.raises(ConfigError, match=expected) as info:
        build_job(load_config(path), config_path=str(path), work_dir=str(tmp_path / "w"))
    assert info.value.key == key and str(path) in str(info.value)


def test_config_values_are_checked_even_when_the_command_line_overrides_them(tmp_path):
    path = _config(tmp_path, top="seed = 'zero'\nstorage = 5\n")
    with pytest.raises(ConfigError, match="key 'seed'"):
        build_job(load_config(path), config_path=str(path), seed=1, storage="memory",
                  work_dir=str(tmp_path / "w"))
    with pytest.raises(ConfigError, match="key 'seed'"):  # --seed -1
        build_job(load_config(_config(tmp_path)), seed=-1, storage="memory",
                  work_dir=str(tmp_path / "w"))


def test_work_dir_that_is_a_file_is_a_config_error_naming_it(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    path = _config(tmp_path, top=f"work_dir = {str(taken)!r}\n")
    with pytest.raises(ConfigError, match="exists and is not a folder") as info:
        build_job(load_config(path), config_path=str(path), storage="memory")
    assert info.value.key == "work_dir" and str(taken) in str(info.value)
    with pytest.raises(ConfigError, match="cannot create work dir"):  # below a file
        build_job(load_config(path), config_path=str(path), work_dir=str(taken / "w"))
    assert main(["search", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "ConfigError" in err and str(taken) in err and "Traceback" not in err
