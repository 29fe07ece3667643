"""WPO as an Acme agent: config, networks, learner and builder."""

from agents.wpo.builder import WPOBuilder
from agents.wpo.config import make_config
from agents.wpo.config import parse_field_value
from agents.wpo.config import PRESETS
from agents.wpo.config import WPOConfig
from agents.wpo.learning import NonFiniteLossError
from agents.wpo.learning import WPOLearner
from agents.wpo.networks import make_behaviour_policy
from agents.wpo.networks import make_networks
from agents.wpo.networks import make_policy
from agents.wpo.networks import WPONetworks
