-- fail: aggregate_not_allowed
SELECT race, HISTOGRAM(income) AS x FROM pums GROUP BY race
