"""Drafts the greedy decoder verifies: the job's answer book and look-up drafts."""
