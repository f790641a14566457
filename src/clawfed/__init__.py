"""clawfed: federated learning for the departments of one enterprise."""

__version__ = "0.1.0"

#: Version of the coordinator-node protocol; a node and a coordinator must agree on it.
PROTOCOL_VERSION = 1
