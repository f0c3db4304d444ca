"""Abuse tests: hostile input into every form and query parameter, CSRF, cookies, login limits, passwords.

Who may open which route (anonymous, agent, admin) is tests/integration/test_access.py's job,
generated from the URL map as well; nothing here repeats it.
"""
