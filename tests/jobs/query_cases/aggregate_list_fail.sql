-- fail: aggregate_not_allowed
SELECT race, LIST(income) AS x FROM pums GROUP BY race
