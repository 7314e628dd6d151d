"""High availability: leader lease, takeover, broker cluster failover."""
