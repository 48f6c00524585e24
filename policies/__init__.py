"""Policies: what a grant allows, authorization checks and output control. Pure: no Flask, no database."""
