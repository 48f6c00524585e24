-- fail: aggregate_not_allowed
SELECT race, ARRAY_AGG(income) AS x FROM pums GROUP BY race
