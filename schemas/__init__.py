"""Typed contracts of Tailor: events, requests, replies, settings and topic names.

This package imports nothing else from the project (data flows one way:
schemas <- models <- consumers / streams).
"""
