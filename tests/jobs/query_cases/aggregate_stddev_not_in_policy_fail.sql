-- fail: aggregate_not_allowed
SELECT race, STDDEV(income) AS sd FROM pums GROUP BY race
