-- fail: aggregate_not_allowed
SELECT race, MODE(income) AS x FROM pums GROUP BY race
