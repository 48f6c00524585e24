-- fail: measure_outside_aggregate, column: pums.income
SELECT FLOOR(income / 10000) * 10000 AS band, COUNT(*) AS n FROM pums GROUP BY FLOOR(income / 10000) * 10000
