"""The checks of a plan's SQL: review rules, summary report, target sessions, group expressions.

No Celery and no metadata database in here. Importing the package loads none of its modules, so a
caller pays only for what it uses (the CLI's input checks need no parser): `check.check_target`
checks one target, `advise.review` runs the rules alone.
"""
