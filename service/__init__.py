"""The HTTP gateway of textgenshap: validates requests, queues jobs, serves results.

Nothing under ``service`` imports torch; the worker does the model work.
"""
