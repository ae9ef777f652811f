"""ESIOS domain: indicator 460 (peninsular demand forecast); pure transforms in ``transform``."""
