-- fail: aggregate_not_allowed
SELECT AVG(income) - AVG(income) + 1 AS z FROM pums
