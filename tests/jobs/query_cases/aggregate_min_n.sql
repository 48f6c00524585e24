-- ok
SELECT race, MIN(income) AS x FROM pums GROUP BY race
