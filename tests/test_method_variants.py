"""Method variants for experiments.compare: wpo[name=value,...] parsing, validation, names."""

import os
import re

import pytest

from agents import methods
from agents import wpo
from runner import method_variants


def test_method_lists_split_on_commas_outside_brackets():
  assert method_variants.split_methods(
      'wpo,wpo[kl_weight_stddev=5],wpo[kl_mode=lagrange,kl_epsilon_stddev=1e-3],sac') == [
          'wpo', 'wpo[kl_weight_stddev=5]', 'wpo[kl_mode=lagrange,kl_epsilon_stddev=1e-3]', 'sac']
  assert method_variants.split_methods(' wpo , mpo ') == ['wpo', 'mpo']


@pytest.mark.parametrize('text, message', [
    ('wpo[kl_weight_stddev=5', '"[" without a matching "]"'),
    ('wpo],sac', '"]" without a matching "["'),
    ('wpo[a=[1]]', 'nested "["'),
    ('wpo,,sac', 'an empty method name'),
    ('wpo,', 'an empty method name'),
])
def test_unbalanced_lists_are_refused(text, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    method_variants.split_methods(text)


def test_parse_types_values_like_run_wpo_config_and_sorts_fields():
  method = method_variants.parse_method(
      'wpo[kl_weight_stddev=5,kl_mode=lagrange,natural_gradient=false,max_grad_norm=none,'
      'num_action_samples=4]')
  assert method == method_variants.Method('wpo', (
      ('kl_mode', 'lagrange'), ('kl_weight_stddev', 5.0), ('max_grad_norm', None),
      ('natural_gradient', False), ('num_action_samples', 4)))
  assert method.name == ('wpo[kl_mode=lagrange,kl_weight_stddev=5.0,max_grad_norm=none,'
                         'natural_gradient=false,num_action_samples=4]')
  # The canonical name parses back to the same method, whatever order or spelling was given.
  assert method_variants.parse_method(method.name) == method
  assert (method_variants.canonical_names('wpo[kl_weight_stddev=5.0,kl_mode=lagrange]') ==
          method_variants.canonical_names('wpo[ kl_mode = lagrange , kl_weight_stddev=5 ]'))
  assert method_variants.parse_method('sac') == method_variants.Method('sac', ())
  assert method_variants.parse_method('sac').name == 'sac'
  # Each value is exactly what agents.wpo.parse_field_value (run_wpo's --config) reads.
  assert method_variants.parse_method('wpo[kl_epsilon_stddev=1e-3]').overrides == (
      ('kl_epsilon_stddev', wpo.parse_field_value('kl_epsilon_stddev', '1e-3')),)


@pytest.mark.parametrize('text, message', [
    ('wpo[]', 'empty overrides'),
    ('wpo[ ]', 'empty overrides'),
    ('sac[kl_weight_stddev=5]', 'sac takes no overrides; only wpo, mpo'),
    ('ppo[x=1]', "Unknown method 'ppo'; valid methods: wpo, mpo, sac, td3, d4pg"),
    ('wpo[kl_weight_stdev=5]', "Unknown WPOConfig field 'kl_weight_stdev'; valid fields: ["),
    ('wpo[kl_weight_stddev=five]', "cannot read 'five' as the type of kl_weight_stddev"),
    ('wpo[kl_weight_stddev]', 'expected wpo[name=value,...]'),
    ('wpo[=5]', 'an override without a field name'),
    ('wpo[a=1,,b=2]', 'expected wpo[name=value,...]'),
    ('wpo[kl_mode=fixed,kl_mode=lagrange]', 'kl_mode is given twice'),
    ('wpo[policy_layers=64,64]', 'network sizes are shared by every method: use --hidden_sizes'),
    ('wpo[policy_improvement=mpo]', 'it is the method itself'),
    ('mpo[policy=tanh_gaussian]', 'its loss needs the Gaussian policy'),
    ('wpo[kl_weight_stddev=5]x', 'one pair of brackets at the end'),
])
def test_bad_variants_are_refused_naming_the_problem(text, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    method_variants.parse_method(text)


def test_unknown_field_message_lists_the_valid_fields():
  with pytest.raises(ValueError) as error:
    method_variants.parse_method('wpo[nope=1]')
  assert 'kl_weight_stddev' in str(error.value) and 'samples_per_insert' in str(error.value)


SETTINGS = methods.CommonSettings(hidden_sizes=(32,), batch_size=64, samples_per_insert=16.0)


@pytest.mark.parametrize('field, value, message', [
    ('hidden_sizes', (), 'hidden_sizes=() is invalid: hidden_sizes must be a non-empty list'),
    ('hidden_sizes', (64, 0), 'hidden_sizes=(64, 0) is invalid'),
    ('batch_size', 0, 'batch_size=0 is invalid: batch_size must be an integer >= 1.'),
    ('samples_per_insert', 0.0, 'samples_per_insert=0.0 is invalid: samples_per_insert must be'),
    ('min_replay_size', 0, 'min_replay_size=0 is invalid'),
    ('discount', 1.5, 'discount=1.5 is invalid: discount must be in [0, 1].'),
])
def test_common_settings_refuse_bad_values_naming_the_field(field, value, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    methods.CommonSettings(**{field: value})


def test_common_settings_store_layer_sizes_as_a_tuple():
  # A list from a command line and the preset's tuple must be one setting (run.json, resume).
  settings = methods.CommonSettings(hidden_sizes=[32, 32])
  assert settings.hidden_sizes == (32, 32)
  assert settings == methods.CommonSettings(hidden_sizes=(32, 32))
CONFIG = wpo.make_config('cpu')


def test_resolve_routes_shared_fields_to_the_shared_settings():
  assert method_variants.resolve('wpo', SETTINGS, CONFIG) == (SETTINGS, CONFIG)
  shared, config = method_variants.resolve(
      'wpo[samples_per_insert=64,kl_weight_stddev=50,policy=tanh_gaussian,init_scale=1.5]',
      SETTINGS, CONFIG)
  assert shared == methods.CommonSettings(hidden_sizes=(32,), batch_size=64,
                                            samples_per_insert=64.0)
  assert (config.kl_weight_stddev, config.policy, config.init_scale) == (50.0, 'tanh_gaussian',
                                                                         1.5)
  # Everything else is the preset's.
  assert config == wpo.make_config('cpu', kl_weight_stddev=50.0, policy='tanh_gaussian',
                                   init_scale=1.5)
  assert set(method_variants.SHARED_FIELDS) == {'batch_size', 'discount', 'min_replay_size',
                                        'samples_per_insert'}


@pytest.mark.parametrize('text, message', [
    ('wpo[kl_weight_stddev=-1]', 'kl_weight_stddev=-1.0 is invalid'),
    ('wpo[kl_mode=adaptive]', "kl_mode must be one of ('fixed', 'lagrange')"),
    ('wpo[samples_per_insert=0]', 'samples_per_insert=0.0 is invalid'),
    ('wpo[policy=beta]', "policy=" + repr('beta') + ' is invalid'),
    ('mpo[entropy_weight=0.1]', 'options of the WPO step'),
    ('mpo[mean_box_penalty=1]', "'wpo' when any of mean_box_penalty is not at its default"),
    ('wpo[policy=tanh_gaussian,mean_box_penalty=1]', "mean_box_penalty=1.0 is invalid: "
     "mean_box_penalty must be 0 with policy='tanh_gaussian'"),
])
def test_resolve_refuses_bad_values_naming_the_field(text, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    method_variants.resolve(text, SETTINGS, CONFIG)


def test_mpo_variants_resolve_under_a_non_gaussian_wpo_preset():
  # --policy=mixture sets WPO's head in the preset; MPO runs Gaussian all the same.
  shared, config = method_variants.resolve('mpo[kl_weight_mean=1]', SETTINGS,
                                   wpo.make_config('cpu', policy='mixture'))
  assert (shared, config.kl_weight_mean) == (SETTINGS, 1.0)


def test_directory_names_are_portable_stable_and_distinct():
  assert method_variants.directory_name('wpo') == 'wpo'
  name = method_variants.directory_name('wpo[kl_weight_stddev=5]')
  assert name == method_variants.directory_name('wpo[kl_weight_stddev=5.0]')  # One variant, one place.
  assert name.startswith('wpo__kl_weight_stddev-5.0__')
  variants = ['wpo[kl_weight_stddev=5]', 'wpo[kl_weight_stddev=50]', 'mpo[kl_weight_stddev=5]',
              'wpo[init_log_dual=-1]', 'wpo[init_log_dual=1]', 'wpo[max_grad_norm=none]',
              'wpo[kl_mode=lagrange,kl_epsilon_stddev=1e-3]', 'wpo[replay_table_name=a/b]']
  names = [method_variants.directory_name(v) for v in variants]
  assert len(set(names)) == len(names)
  for directory in names:
    assert re.fullmatch(r'[A-Za-z0-9._-]+', directory) and len(directory) < 200
    assert os.path.basename(directory) == directory


def test_report_order_keeps_the_given_order_then_the_known_methods():
  assert method_variants.report_order(('wpo[kl_weight_stddev=5.0]', 'sac', 'wpo')) == (
      'wpo[kl_weight_stddev=5.0]', 'sac', 'wpo', 'mpo', 'td3', 'd4pg')
