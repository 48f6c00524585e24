-- fail: aggregate_not_allowed
SELECT race, MIN(income, 3) AS x FROM pums GROUP BY race
