"""Method names with WPOConfig overrides (variants), for `experiments.compare --methods`.

  wpo                                          the preset's WPO
  wpo[kl_weight_stddev=5]                      the same with one WPOConfig field replaced
  wpo[kl_mode=lagrange,kl_epsilon_stddev=1e-3] several fields, comma-separated
  mpo[samples_per_insert=64]                   MPO shares WPOConfig, so it takes overrides too

Values are read by `agents.wpo.parse_field_value` (the parser of run_wpo's --config=name=value)
and checked by WPOConfig. A method list splits on the commas outside brackets only.

Every variant has one canonical name: the base method, then its overrides sorted by field, each
value written back from its parsed form (`kl_weight_stddev=5` and `=5.0` are one variant,
'wpo[kl_weight_stddev=5.0]'). That name labels its column in results.csv/md and its curve, is
stored as run.json's `method`, and gives the run directory (`directory_name`), so reruns find it.

Fields the harness shares between methods (`agents.methods.CommonSettings`: batch size, replay
ratio, replay warm-up, discount) may be overridden: the variant then runs with its own value and
the run's run.json `settings` records it; that is how a replay-ratio study is expressed
(`wpo[samples_per_insert=64]`). Network sizes stay shared (use --hidden_sizes for every
method), and `policy_improvement` is the method's name itself.
"""

import dataclasses
import hashlib
import re
from typing import Any, Dict, List, NamedTuple, Tuple

from agents import methods
from agents import wpo

# Methods configured by a WPOConfig: only these take overrides.
CONFIGURED_METHODS = ('wpo', 'mpo')
# WPOConfig fields that `methods.make_agent_parts` takes from CommonSettings instead.
SHARED_FIELDS = tuple(sorted({f.name for f in dataclasses.fields(methods.CommonSettings)} &
                             {f.name for f in dataclasses.fields(wpo.WPOConfig)}))
# Overrides refused, with the reason.
REFUSED_FIELDS = {
    'policy_layers': 'network sizes are shared by every method: use --hidden_sizes',
    'critic_layers': 'network sizes are shared by every method: use --hidden_sizes',
    'policy_improvement': 'it is the method itself: write wpo[...] or mpo[...]',
}
# MPO's loss needs a Gaussian policy (make_agent_parts gives MPO one whatever the preset says).
_REFUSED_FOR_MPO = ('policy', 'num_components')

_SAFE_CHARACTER = re.compile(r'[^A-Za-z0-9._-]')
_MAX_SLUG = 120


class Method(NamedTuple):
  """A parsed method: base name and overrides sorted by field name."""
  base: str
  overrides: Tuple[Tuple[str, Any], ...]

  @property
  def name(self) -> str:
    """The canonical name, e.g. 'wpo[kl_mode=lagrange,kl_weight_stddev=5.0]'."""
    if not self.overrides:
      return self.base
    return f'{self.base}[' + ','.join(f'{k}={format_value(v)}' for k, v in self.overrides) + ']'


def format_value(value: Any) -> str:
  """Text that `agents.wpo.parse_field_value` reads back as `value`."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if value is None:
    return 'none'
  if isinstance(value, tuple):
    return ','.join(str(v) for v in value)
  if isinstance(value, float):
    return repr(value)
  return str(value)


def split_methods(text: str) -> List[str]:
  """'wpo,wpo[a=1,b=2],sac' -> ['wpo', 'wpo[a=1,b=2]', 'sac']: commas inside brackets stay.

  Raises:
    ValueError: unbalanced or nested brackets, or an empty entry.
  """
  entries, current, depth = [], [], 0
  for character in text:
    if character == '[':
      if depth:
        raise ValueError(f'{text!r}: nested "[" (write one [...] per method).')
      depth = 1
    elif character == ']':
      if not depth:
        raise ValueError(f'{text!r}: "]" without a matching "[".')
      depth = 0
    if character == ',' and not depth:
      entries.append(''.join(current).strip())
      current = []
    else:
      current.append(character)
  if depth:
    raise ValueError(f'{text!r}: "[" without a matching "]".')
  entries.append(''.join(current).strip())
  if any(not entry for entry in entries):
    raise ValueError(f'{text!r}: an empty method name (check for stray commas).')
  return entries


def _override_items(base: str, body: str, text: str) -> List[Tuple[str, str]]:
  """'a=1,b=2' -> [('a', '1'), ('b', '2')]; a piece without '=' continues the previous value
  (tuple fields: 'policy_layers=64,64')."""
  items: List[List[str]] = []
  for piece in body.split(','):
    name, sep, value = piece.partition('=')
    if sep:
      if not name.strip():
        raise ValueError(f'{text!r}: an override without a field name ({piece!r}).')
      items.append([name.strip(), value.strip()])
    elif items and piece.strip():
      items[-1][1] += ',' + piece.strip()
    else:
      raise ValueError(f'{text!r}: expected {base}[name=value,...], got {piece!r}.')
  return [(name, value) for name, value in items]


def parse_method(text: str) -> Method:
  """'wpo[kl_weight_stddev=5]' -> Method('wpo', (('kl_weight_stddev', 5.0),)).

  Checks the syntax, the base name, the field names and the value types; `resolve` checks the
  values themselves.

  Raises:
    ValueError: naming the problem and the valid names.
  """
  text = text.strip()
  base, bracket, rest = text.partition('[')
  base = base.strip()
  methods.validate_method(base)
  if not bracket:
    if ']' in text:
      raise ValueError(f'{text!r}: "]" without a matching "[".')
    return Method(base, ())
  if not rest.endswith(']') or '[' in rest or ']' in rest[:-1]:
    raise ValueError(f'{text!r}: expected {base}[name=value,...] with one pair of brackets at '
                     'the end.')
  if base not in CONFIGURED_METHODS:
    raise ValueError(f'{text!r}: {base} takes no overrides; only {", ".join(CONFIGURED_METHODS)} '
                     'are configured by WPOConfig.')
  body = rest[:-1].strip()
  if not body:
    raise ValueError(f'{text!r}: empty overrides; write {base} for the preset\'s settings or '
                     f'{base}[name=value,...].')
  overrides: Dict[str, Any] = {}
  for name, value in _override_items(base, body, text):
    if name in overrides:
      raise ValueError(f'{text!r}: {name} is given twice.')
    if name in REFUSED_FIELDS:
      raise ValueError(f'{text!r}: {name} cannot be overridden: {REFUSED_FIELDS[name]}.')
    if base == 'mpo' and name in _REFUSED_FOR_MPO:
      raise ValueError(f'{text!r}: {name} cannot be overridden for mpo: its loss needs the '
                       'Gaussian policy.')
    try:
      overrides[name] = wpo.parse_field_value(name, value)
    except ValueError as error:
      raise ValueError(f'{text!r}: {error}') from None
  return Method(base, tuple(sorted(overrides.items())))


def canonical_names(text: str) -> Tuple[str, ...]:
  """The canonical name of every method in a --methods value (see `split_methods`)."""
  return tuple(parse_method(entry).name for entry in split_methods(text))


def base_method(name: str) -> str:
  """'wpo[...]' -> 'wpo'."""
  return parse_method(name).base


def resolve(name: str, settings: methods.CommonSettings,
            wpo_config: wpo.WPOConfig) -> Tuple[methods.CommonSettings, wpo.WPOConfig]:
  """The shared settings and WPOConfig that method `name` runs with.

  Overrides of SHARED_FIELDS replace the shared value for this method only; the rest replace
  WPOConfig fields. Without overrides both come back unchanged.

  Raises:
    ValueError: a value WPOConfig (or CommonSettings) rejects, naming the field.
  """
  method = parse_method(name)
  if not method.overrides:
    return settings, wpo_config
  shared = {k: v for k, v in method.overrides if k in SHARED_FIELDS}
  own = {k: v for k, v in method.overrides if k not in SHARED_FIELDS}
  try:
    config = dataclasses.replace(wpo_config, **own)
    # The config make_agent_parts will build (MPO with a Gaussian head), so that a bad shared
    # value, or a WPO-only option on MPO, fails here.
    dataclasses.replace(config, policy_improvement=method.base,
                        policy=config.policy if method.base == 'wpo' else 'gaussian', **shared)
    settings = dataclasses.replace(settings, **shared)
  except ValueError as error:
    raise ValueError(f'{name!r}: {error}') from None
  return settings, config


def directory_name(name: str) -> str:
  """A portable directory name for method `name`, the same on every call.

  Plain methods keep their name ('wpo'); a variant gets its overrides in portable characters
  plus a hash of its canonical name, which keeps distinct variants apart whatever the
  characters replaced or the length cut: 'wpo__kl_weight_stddev-5.0__3a1f09c2'.
  """
  method = parse_method(name)
  if not method.overrides:
    return method.base
  slug = '__'.join(_SAFE_CHARACTER.sub('_', f'{k}-{format_value(v)}') for k, v in method.overrides)
  digest = hashlib.sha256(method.name.encode()).hexdigest()[:8]
  return f'{method.base}__{slug[:_MAX_SLUG]}__{digest}'


def report_order(names: Tuple[str, ...]) -> Tuple[str, ...]:
  """Column order for the reports: the given methods, then any other known method."""
  return tuple(dict.fromkeys(tuple(names) + methods.METHODS))
