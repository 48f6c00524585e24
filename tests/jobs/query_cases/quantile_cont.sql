-- ok
SELECT race, QUANTILE_CONT(income, 0.9) AS p90 FROM pums GROUP BY race
