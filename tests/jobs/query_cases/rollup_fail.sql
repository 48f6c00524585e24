-- fail: single_select
SELECT race, sex, COUNT(*) AS n FROM pums GROUP BY ROLLUP (race, sex)
