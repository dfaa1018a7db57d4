"""Bulk delivery of leads without consent: contacts_json_import batches (README)."""
