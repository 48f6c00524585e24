-- fail: aggregate_not_allowed
SELECT race, VAR_SAMP(income) AS v FROM pums GROUP BY race
