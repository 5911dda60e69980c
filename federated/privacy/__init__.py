"""Differential privacy for the federation: DP-FedAvg wrappers around any strategy, and their privacy account.

Importing this package registers the wrappers under their YAML names (``privacy.type``:
``server_fixed_clipping``, ``client_fixed_clipping``, ``server_adaptive_clipping``,
``client_adaptive_clipping``). The account needs dp-accounting (the ``privacy`` extra), loaded
when a wrapper is given a ``delta``.
"""

from federated.privacy.account import PrivacyAccount as PrivacyAccount
from federated.privacy.adaptive_clipping import (
    DifferentialPrivacyClientSideAdaptiveClipping as DifferentialPrivacyClientSideAdaptiveClipping,
)
from federated.privacy.adaptive_clipping import (
    DifferentialPrivacyServerSideAdaptiveClipping as DifferentialPrivacyServerSideAdaptiveClipping,
)
from federated.privacy.client_clipping import UpdateClipping as UpdateClipping
from federated.privacy.dp_wrapper import DifferentialPrivacyWrapper as DifferentialPrivacyWrapper
from federated.privacy.dp_wrapper import privacy_account as privacy_account
from federated.privacy.fixed_clipping import (
    DifferentialPrivacyClientSideFixedClipping as DifferentialPrivacyClientSideFixedClipping,
)
from federated.privacy.fixed_clipping import (
    DifferentialPrivacyServerSideFixedClipping as DifferentialPrivacyServerSideFixedClipping,
)

__all__ = [
    "DifferentialPrivacyClientSideAdaptiveClipping",
    "DifferentialPrivacyClientSideFixedClipping",
    "DifferentialPrivacyServerSideAdaptiveClipping",
    "DifferentialPrivacyServerSideFixedClipping",
    "DifferentialPrivacyWrapper",
    "PrivacyAccount",
    "UpdateClipping",
    "privacy_account",
]
