"""Cassandra access: session, prepared statements, schema; driver errors translated here."""

from .store import CassandraStore

__all__ = ["CassandraStore"]
