-- fail: aggregate_not_allowed
SELECT BIT_OR(income) AS b FROM pums
