-- fail: aggregate_not_allowed
SELECT race, SUM(COUNT(*)) AS x FROM pums GROUP BY race
