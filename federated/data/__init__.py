"""Client data: seeded partitions of any labels, each client's own validation hold-out and feature skew,
and the built-in data sets that ship with scikit-learn.

Importing this package registers the built-in data sets under their YAML names (``digits``,
``breast_cancer``). Nothing is downloaded.

Example:
    >>> loaders, test = digits_federation(num_clients=4, partition="dirichlet", alpha=0.5, seed=0)
    >>> len(loaders), sum(len(dl.dataset) for dl in loaders) + len(test.dataset)
    (4, 1797)
"""

from federated.data.datasets import FederatedData as FederatedData
from federated.data.datasets import as_federated_data as as_federated_data
from federated.data.datasets import breast_cancer as breast_cancer
from federated.data.datasets import digits as digits
from federated.data.datasets import digits_federation as digits_federation
from federated.data.datasets import from_arrays as from_arrays
from federated.data.datasets import labelled_datasets as labelled_datasets
from federated.data.datasets import load_digits_data as load_digits_data
from federated.data.datasets import site_of as site_of
from federated.data.datasets import standardise as standardise
from federated.data.partitions import PARTITIONS as PARTITIONS
from federated.data.partitions import Partition as Partition
from federated.data.partitions import client_datasets as client_datasets
from federated.data.partitions import partition as partition
from federated.data.partitions import partition_dirichlet as partition_dirichlet
from federated.data.partitions import partition_iid as partition_iid
from federated.data.partitions import partition_shards as partition_shards
from federated.data.partitions import skew_features as skew_features
from federated.data.partitions import validation_split as validation_split

__all__ = [
    "PARTITIONS",
    "FederatedData",
    "Partition",
    "as_federated_data",
    "breast_cancer",
    "client_datasets",
    "digits",
    "digits_federation",
    "from_arrays",
    "labelled_datasets",
    "load_digits_data",
    "partition",
    "partition_dirichlet",
    "partition_iid",
    "partition_shards",
    "site_of",
    "skew_features",
    "standardise",
    "validation_split",
]
