-- fail: aggregate_not_allowed
SELECT race, FIRST(income) AS x FROM pums GROUP BY race
